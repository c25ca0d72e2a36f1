// Command funcmain serves the root function exactly as kn func's Go
// scaffolding does for an instanced CloudEvents function: func-go's runtime
// wraps function.New(), serving CloudEvents on "/" and health on
// /health/readiness and /health/liveness at LISTEN_ADDRESS. Tests, the demo
// and the benchmark run this binary, so they exercise the same runtime the
// deployed image uses.
package main

import (
	"fmt"
	"os"

	ce "knative.dev/func-go/cloudevents"

	"function"
)

func main() {
	if err := ce.Start(function.New()); err != nil {
		fmt.Fprintln(os.Stderr, err.Error())
		os.Exit(1)
	}
}
