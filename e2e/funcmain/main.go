// Command funcmain serves the root function exactly as kn func's Go
// scaffolding does for an instanced HTTP function (func.yaml invoke: http;
// knative.dev/func v0.44.0's instanced-http main): func-go's HTTP runtime
// wraps function.New(), serving its Handle on "/" and health on
// /health/readiness and /health/liveness at LISTEN_ADDRESS. Tests, the demo
// and the benchmark run this binary, so they exercise the same runtime the
// deployed image uses.
package main

import (
	"fmt"
	"os"

	fhttp "knative.dev/func-go/http"

	"function"
)

func main() {
	if err := fhttp.Start(function.New()); err != nil {
		fmt.Fprintln(os.Stderr, err.Error())
		os.Exit(1)
	}
}
