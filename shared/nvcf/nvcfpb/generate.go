// Package nvcfpb holds the generated Go code for the NVCF autoscaler gRPC
// API described in autoscaler.proto.
//
// The generated files are committed so that building the module needs
// neither protoc nor its plugins. Regenerate with Debian's protoc (which
// ships google/protobuf/duration.proto under /usr/include) and the plugins
// protoc-gen-go (same version as google.golang.org/protobuf in go.mod) and
// protoc-gen-go-grpc on PATH:
//
//	go generate ./shared/nvcf/nvcfpb
package nvcfpb

//go:generate protoc -I . -I /usr/include --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative autoscaler.proto
