package istioyaml

import "testing"

// kitchenSink uses most field kinds of the networking API (durations,
// wrappers, doubles, maps of messages and of integers, enums, null fields
// and map values) to check that Decode builds exactly what
// strict jsonpb would once kube-apiserver has pruned the nulls.
const kitchenSink = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sink}
spec:
  hosts: [reviews, "*.example.com"]
  gateways: [mesh]
  exportTo: ["."]
  http:
  - name: canary
    match:
    - uri: {regex: "^/api/v[0-9]+/.*"}
      headers:
        end-user: {exact: jason}
        x-any: {}
        x-pruned: null
      queryParams:
        debug: {prefix: "1"}
      ignoreUriCase: true
      port: 9080
      sourceLabels: {app: productpage}
      withoutHeaders:
        x-skip: {exact: "yes"}
    - method: {exact: GET}
      authority: {prefix: api.}
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 75
      headers:
        request:
          set: {x-route: canary}
          add: {x-trace: "1"}
          remove: [x-internal]
        response:
          remove: [server]
    - destination: {host: reviews, subset: v3}
      weight: 25
    timeout: 1.5s
    retries:
      attempts: 3
      perTryTimeout: 250ms
      retryOn: gateway-error,connect-failure
      retryRemoteLocalities: false
      backoff: -1.5s
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 7s}
      abort: {percentage: {value: 12.5}, httpStatus: 503}
    mirror: {host: reviews, subset: v1}
    mirrorPercentage: {value: 100.0}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: ".*\\.example\\.org"}]
      allowMethods: [GET, POST]
      allowCredentials: true
      maxAge: 24h
      unmatchedPreflights: IGNORE
    headers:
      request: {set: {x-a: b}}
    rewrite: {uri: /v2/}
  - redirect: {uri: /new, redirectCode: 308, derivePort: FROM_REQUEST_PORT}
  - directResponse: {status: 418, body: {string: teapot}}
  - route:
    - destination: {host: reviews}
  tcp:
  - match: [{port: 3306, destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: mysql}, weight: 100}]
  tls:
  - match: [{sniHosts: [a.example.com], port: 443}]
    route: [{destination: {host: a.example.com}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: sink}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 0s, path: /}
        minimumRingSize: 1024
      localityLbSetting:
        enabled: true
        distribute:
        - from: region1/zone1/*
          to: {"region1/zone1/*": 80, "region1/zone2/*": 20}
        failoverPriority: [topology.kubernetes.io/region]
      warmup: {duration: 60s, minimumPercent: 10, aggression: 1.5}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1, idleTimeout: 1h, h2UpgradePolicy: UPGRADE, useClientProtocol: true}
    outlierDetection:
      consecutive5xxErrors: 5
      consecutiveGatewayErrors: 0
      interval: 10s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
      minHealthPercent: 0
      splitExternalLocalOriginErrors: false
    tls: {mode: SIMPLE, sni: reviews.example.com, insecureSkipVerify: false, subjectAltNames: [a, b]}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
      tls: {mode: ISTIO_MUTUAL}
    proxyProtocol: {version: V2}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  exportTo: ["*"]
  workloadSelector: {matchLabels: {app: reviews}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: sink}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS, targetPort: 8443}
    hosts: [ns/*.example.com]
    bind: 0.0.0.0
    tls:
      mode: MUTUAL
      credentialName: cred
      minProtocolVersion: TLSV1_2
      maxProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-RSA-AES256-GCM-SHA384]
      httpsRedirect: false
    name: secure
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sink}
spec:
  hosts: [api.example.com]
  addresses: [192.0.2.1/32]
  ports:
  - {number: 443, name: https, protocol: TLS, targetPort: 8443}
  location: MESH_EXTERNAL
  resolution: DNS
  endpoints:
  - address: 192.0.2.10
    ports: {https: 8443, "http": 8080, grpc: null}
    labels: {version: v1}
    network: n1
    locality: r/z
    weight: 3
    serviceAccount: sa
  subjectAltNames: [spiffe://a/b]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sink}
spec: {address: 10.0.0.5, ports: {http: 9080}, labels: {app: ratings, version: v2}, weight: 10}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sink}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: NONE
    connectionPool: {http: {http2MaxRequests: 1000}}
  egress:
  - port: {number: 80, protocol: HTTP, name: egress}
    bind: 127.0.0.1
    hosts: ["./*", "istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: proxy, port: {number: 3128}}}
  inboundConnectionPool: {tcp: {maxConnections: 10}}
`

func TestDecodeKitchenSink(t *testing.T) {
	objs, warnings, errs := Decode("sink.yaml", []byte(kitchenSink), Options{})
	if len(errs) != 0 || len(warnings) != 0 {
		t.Fatalf("errors %v warnings %v", errs, warnings)
	}
	if len(objs) != 6 {
		t.Fatalf("got %d objects, want 6", len(objs))
	}
	for _, o := range objs {
		if err := checkAgainstJSONPB(o); err != nil {
			t.Errorf("%s: %v", o.Ref(), err)
		}
	}
}

// FuzzDecode also starts from the kitchen sink.
func init() { extraFuzzSeeds = append(extraFuzzSeeds, kitchenSink) }
