package grpcauth_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/tokenstore/tokenstore"
	"github.com/tokenstore/tokenstore/grpcauth"
)

// benchTokens opens a store with n tokens holding five scopes, validated
// once so that the store's cache is warm as a running server's is.
func benchTokens(b *testing.B, n int) (*tokenstore.DB, []string) {
	db, err := tokenstore.Open(filepath.Join(b.TempDir(), "tokens.db"), &tokenstore.Options{SweepInterval: -1})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	ctx := context.Background()
	reqs := make([]tokenstore.IssueRequest, n)
	for i := range reqs {
		reqs[i] = tokenstore.IssueRequest{Subject: "user", Metadata: map[string]string{tokenstore.ScopeKey: "orders:read orders:write profile read write"}}
	}
	issued, err := db.IssueBatch(ctx, reqs)
	require.NoError(b, err)
	tokens := make([]string, n)
	for i, is := range issued {
		tokens[i] = is.Token
		_, err := db.Validate(ctx, is.Token)
		require.NoError(b, err)
	}
	return db, tokens
}

// BenchmarkInterceptor is the unary interceptor's cost on top of Validate:
// Validate alone, then the interceptor (reading the metadata, Validate,
// the Info into the context) around a handler that does nothing, then the
// same with two scopes required. Calls run in parallel, each with the
// incoming metadata gRPC would have parsed from the wire.
func BenchmarkInterceptor(b *testing.B) {
	const n = 1024
	db, tokens := benchTokens(b, n)
	ctxs := make([]context.Context, n)
	for i, tok := range tokens {
		ctxs[i] = metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	}
	info := &grpc.UnaryServerInfo{FullMethod: unaryMethod}
	handler := func(ctx context.Context, _ any) (any, error) {
		if _, ok := tokenstore.FromContext(ctx); !ok {
			panic("no Info")
		}
		return nil, nil
	}

	b.Run("Validate", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := db.Validate(ctxs[i%n], tokens[i%n]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	run := func(intercept grpc.UnaryServerInterceptor) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := intercept(ctxs[i%n], nil, info, handler); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		}
	}
	b.Run("Interceptor", run(grpcauth.UnaryServerInterceptor(db)))
	b.Run("InterceptorScopes", run(grpcauth.UnaryServerInterceptor(db,
		grpcauth.WithMethodScopes(map[string][]string{unaryMethod: {"orders:write", "write"}}))))
}

// BenchmarkUnaryCall is a whole unary call (EmptyCall, whose handler does
// nothing) over loopback TCP, with the token in its metadata, without and
// with the interceptor: what the token check weighs in a real call.
func BenchmarkUnaryCall(b *testing.B) {
	const n = 1024
	db, tokens := benchTokens(b, n)
	ctxs := make([]context.Context, n)
	for i, tok := range tokens {
		ctxs[i] = metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	run := func(opts ...grpc.ServerOption) func(b *testing.B) {
		return func(b *testing.B) {
			srv := grpc.NewServer(opts...)
			testgrpc.RegisterTestServiceServer(srv, testService{})
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(b, err)
			served := make(chan error, 1)
			go func() { served <- srv.Serve(lis) }()
			defer func() { srv.Stop(); require.NoError(b, <-served) }()
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			require.NoError(b, err)
			defer conn.Close()
			client := testgrpc.NewTestServiceClient(conn)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := client.EmptyCall(ctxs[i%n], &testgrpc.Empty{}); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		}
	}
	b.Run("NoAuth", run())
	b.Run("Interceptor", run(grpc.UnaryInterceptor(grpcauth.UnaryServerInterceptor(db))))
}
