# The two commands every newcomer needs (see README):
#   make demo   the main job: local stack up, functions running, load changing, instances following
#   make test   every test, against real Cassandra, VictoriaMetrics and Prometheus
# Both install what is missing and are safe to run again.

SHELL := /usr/bin/env bash
GO    ?= go
STACK := e2e/stack/stack.sh

.PHONY: demo test unit vet stack-up stack-down stack-status knative-up knative-down bench bench-policy fuzz fmt mutate fresh-check

demo:
	e2e/demo.sh

test:
	e2e/run-tests.sh

# Unit tests only: integration tests skip with a message naming `make test`.
unit:
	$(GO) test -count=1 ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	e2e/tidy-check.sh

stack-up:
	$(STACK) start all

stack-down:
	$(STACK) stop all

stack-status:
	$(STACK) status all

# A local Kubernetes control plane (etcd, kube-apiserver and
# kube-controller-manager built from source) with Knative's CRDs, in a
# network namespace of its own (root needed); then
#   eval "$$(e2e/kube/kube.sh env)"; kubectl get crd
# The first run builds the binaries (minutes; see the README).
# Then Knative's own processes on it (e2e/kube/knative.sh: Eventing's
# controller, webhook, PingSource adapter, MT broker, in-memory channel;
# Serving's controller and webhook).
knative-up:
	e2e/kube/kube.sh start
	e2e/kube/knative.sh start

knative-down:
	e2e/kube/knative.sh stop
	e2e/kube/kube.sh stop

# Whole cycles at 1k, 10k and 100k versions against the local stack, with the
# one-query-per-function baseline in the same run (about 15 minutes; results
# in e2e/out/bench). Flags for e2e/bench go through ARGS, e.g.
#   make bench ARGS="-sizes 1000,10000 -cycles 3"
bench:
	e2e/bench.sh $(ARGS)

# The policy benchmark: load shapes replayed through the real policy.Decide
# in a closed loop with production timings, for the reference, our modes and
# an oracle (seconds, no servers; results in e2e/out/benchpolicy). Flags for
# e2e/benchpolicy go through ARGS, e.g. make bench-policy ARGS=-explore
bench-policy:
	$(GO) run ./e2e/benchpolicy $(ARGS)

# The PromQL answer decoder's fuzzers (the streaming decoder against the [2]any
# reference and against the whole-body parser it replaced) and the inbound
# path's (the event parsers, the HTTP receiver, the routing by type and role:
# bad input is a bounded 4xx, never a 5xx), FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run X -fuzz FuzzParseResponse -fuzztime $(FUZZTIME) ./shared/tsdb
	$(GO) test -run X -fuzz FuzzFastParserMatchesReference -fuzztime $(FUZZTIME) ./shared/tsdb
	$(GO) test -run X -fuzz FuzzStreamMatchesBuffered -fuzztime $(FUZZTIME) ./shared/tsdb
	$(GO) test -run X -fuzz FuzzParseEvents -fuzztime $(FUZZTIME) ./shared/events
	$(GO) test -run X -fuzz FuzzServeHTTP -fuzztime $(FUZZTIME) ./shared/receiver
	$(GO) test -run X -fuzz FuzzRoute -fuzztime $(FUZZTIME) .

# Mutation testing (gremlins) of the packages every decision rests on;
# fails under 95 % test efficacy. PKGS narrows it, e.g. PKGS=./shared/events
mutate:
	e2e/mutate.sh $(PKGS)

# CI as a newcomer gets it: main cloned into a temp dir, CI=true .ci/run
# with its own stack (the local stack must be stopped), phase times printed.
fresh-check:
	e2e/fresh-clone.sh

fmt:
	gofmt -w $$(git ls-files '*.go')
