package grpcauth_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/grpcauth"
)

// A gRPC server whose every method needs a token, one of them a scope,
// and whose health service needs none.
func Example() {
	dir, err := os.MkdirTemp("", "grpcauth-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := tokenstore.Open(filepath.Join(dir, "tokens.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	opts := []grpcauth.Option{
		grpcauth.WithMethodScopes(map[string][]string{"/grpc.testing.TestService/EmptyCall": {"admin"}}),
		grpcauth.WithPublicMethods(grpcauth.HealthService),
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(grpcauth.UnaryServerInterceptor(db, opts...)),
		grpc.StreamInterceptor(grpcauth.StreamServerInterceptor(db, opts...)),
	)
	testgrpc.RegisterTestServiceServer(srv, testService{}) // its handlers call tokenstore.FromContext
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	token, _, err := db.Issue(context.Background(), "alice", tokenstore.WithScopes("read"))
	if err != nil {
		log.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)

	resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	fmt.Println(resp.GetUsername(), resp.GetOauthScope(), err)
	_, err = client.EmptyCall(ctx, &testgrpc.Empty{})
	fmt.Println(status.Code(err), status.Convert(err).Message())
	_, err = client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	fmt.Println(status.Code(err), status.Convert(err).Message())
	check, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(check.GetStatus(), err)
	// Output:
	// alice read <nil>
	// PermissionDenied the token lacks a required scope: requires admin
	// Unauthenticated missing or invalid token
	// SERVING <nil>
}
