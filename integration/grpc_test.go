package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcBackend is a gRPC server in the test process that serves only the
// standard health service, so no generated code of our own is needed.
type grpcBackend struct {
	addr   string
	health *health.Server
	calls  atomic.Int64 // health calls (unary and streaming) that reached it
}

func startGRPCBackend(t *testing.T) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{addr: ln.Addr().String(), health: health.NewServer()}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			b.calls.Add(1)
			return handler(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			b.calls.Add(1)
			return handler(srv, ss)
		}),
	)
	healthpb.RegisterHealthServer(srv, b.health)
	go srv.Serve(ln)
	// Stop, not GracefulStop: a Watch stream left open by a failed test
	// would hold GracefulStop forever.
	t.Cleanup(srv.Stop)
	return b
}

// grpcGatewayConfig is a Gateway with a plaintext GRPC server on grpcPort
// and an HTTPS SIMPLE server on httpsPort for grpc.example.com, and a
// VirtualService that sends both to a ServiceEntry whose port is GRPC (so
// the upstream speaks h2c), its endpoint a WorkloadEntry on backend. A
// request with the header x-fault: unavailable is aborted with gRPC status
// UNAVAILABLE.
func grpcGatewayConfig(backend string, grpcPort, httpsPort int, cert *leaf) string {
	host, port, _ := net.SplitHostPort(backend)
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: grpc-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: %d
      name: grpc
      protocol: GRPC
    hosts:
    - grpc.example.com
  - port:
      number: %d
      name: https
      protocol: HTTPS
    hosts:
    - grpc.example.com
    tls:
      mode: SIMPLE
      serverCertificate: %s
      privateKey: %s
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: health
spec:
  hosts:
  - health.grpc.internal
  location: MESH_INTERNAL
  ports:
  - number: 50051
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: health
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: health-v1
spec:
  address: %s
  labels:
    app: health
  ports:
    grpc: %s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: grpc
spec:
  hosts:
  - grpc.example.com
  gateways:
  - grpc-gateway
  http:
  - match:
    - headers:
        x-fault:
          exact: unavailable
    fault:
      abort:
        grpcStatus: UNAVAILABLE
        percentage:
          value: 100
    route:
    - destination:
        host: health.grpc.internal
        port:
          number: 50051
  - route:
    - destination:
        host: health.grpc.internal
        port:
          number: 50051
`, grpcPort, httpsPort, cert.certFile, cert.keyFile, host, port)
}

// dialGRPC is a gRPC client of the gateway at addr for grpc.example.com
// (its :authority), with no name resolution.
func dialGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithAuthority("grpc.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestGatewayGRPC: a real gRPC client (grpc-go) through a Gateway, over a
// plaintext GRPC server (h2c) and an HTTPS SIMPLE server (h2 over TLS), to
// a real gRPC server reached over h2c: a unary Health.Check, a
// server-streaming Health.Watch that carries a status change made on the
// server while the stream is open, and a VirtualService fault abort with
// grpcStatus UNAVAILABLE that the client reads as codes.Unavailable
// without the call reaching the server.
func TestGatewayGRPC(t *testing.T) {
	requireBinaries(t)
	backend := startGRPCBackend(t)
	dir := t.TempDir()
	ca := newTestCA(t, "grpc root")
	cert := ca.issueValid(t, dir, "grpc", "grpc.example.com")
	grpcPort, httpsPort := freePort(t), freePort(t)
	grpcAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort))
	httpsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort))
	startCaddyIn(t, dir, grpcGatewayConfig(backend.addr, grpcPort, httpsPort, cert), grpcAddr, httpsAddr)

	tests := []struct {
		name  string
		addr  string
		creds credentials.TransportCredentials
	}{
		{"GRPC server h2c", grpcAddr, insecure.NewCredentials()},
		{"HTTPS SIMPLE server", httpsAddr, credentials.NewTLS(&tls.Config{RootCAs: ca.pool(), ServerName: "grpc.example.com"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			client := healthpb.NewHealthClient(dialGRPC(t, tt.addr, tt.creds))
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()

			t.Run("unary Check", func(t *testing.T) {
				resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("Check: %v, %v; want SERVING", resp.GetStatus(), err)
				}
			})

			t.Run("server-streaming Watch", func(t *testing.T) {
				watchCtx, stop := context.WithCancel(ctx)
				defer stop()
				stream, err := client.Watch(watchCtx, &healthpb.HealthCheckRequest{})
				if err != nil {
					t.Fatal(err)
				}
				first, err := stream.Recv()
				if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("Watch, first message: %v, %v; want SERVING", first.GetStatus(), err)
				}
				// The server has the watcher registered once it sent the
				// first status: the change is streamed to this client.
				backend.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
				next, err := stream.Recv()
				if err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
					t.Fatalf("Watch, after the change: %v, %v; want NOT_SERVING", next.GetStatus(), err)
				}
				backend.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
				again, err := stream.Recv()
				if err != nil || again.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("Watch, after the change back: %v, %v; want SERVING", again.GetStatus(), err)
				}
			})

			t.Run("fault abort grpcStatus UNAVAILABLE", func(t *testing.T) {
				before := backend.calls.Load()
				faultCtx := metadata.AppendToOutgoingContext(ctx, "x-fault", "unavailable")
				_, err := client.Check(faultCtx, &healthpb.HealthCheckRequest{})
				if code := status.Code(err); code != codes.Unavailable {
					t.Errorf("Check with x-fault: %v (code %v), want Unavailable", err, code)
				}
				if msg := status.Convert(err).Message(); msg != "fault filter abort" {
					t.Errorf("Check with x-fault: message %q, want Envoy's %q", msg, "fault filter abort")
				}
				// The abort answers before any proxying: a call that went on
				// would have been answered by the server, and counted.
				if got := backend.calls.Load(); got != before {
					t.Errorf("the aborted call reached the server (%d calls, want %d)", got, before)
				}
			})
		})
	}
}
