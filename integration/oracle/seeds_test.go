package oracle

// seedDocuments are hand-written objects that Istio accepts, mutated like
// the corpus. They cover what the sample corpus lacks: Sidecar and
// WorkloadEntry (absent from the samples) and the VirtualService,
// DestinationRule, Gateway and ServiceEntry fields the samples never use
// (retries, CORS, header operations, rewrites, redirects, direct responses,
// connection pools, consistent hashing, locality, TLS settings, ...).
var seedDocuments = map[string]string{
	"seed/vs-http-full.yaml": `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-full, namespace: default}
spec:
  hosts: [reviews, reviews.example.com]
  exportTo: [".", "istio-system"]
  http:
  - name: canary
    match:
    - name: jason
      uri: {prefix: /api}
      headers:
        end-user: {exact: jason}
        x-present: {}
      withoutHeaders:
        x-skip: {regex: "on|yes"}
      queryParams:
        debug: {exact: "1"}
      method: {exact: GET}
      authority: {prefix: reviews}
      scheme: {exact: http}
      port: 9080
      ignoreUriCase: true
      sourceLabels: {app: productpage}
      sourceNamespace: default
      statPrefix: canary
    - uri: {regex: "/v[0-9]+/.*"}
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 75
      headers:
        request:
          set: {x-route: canary}
        response:
          remove: [x-internal]
    - destination: {host: reviews, subset: v3}
      weight: 25
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream,503
      retryRemoteLocalities: true
      retryIgnorePreviousHosts: false
      backoff: 25ms
    fault:
      delay:
        fixedDelay: 5s
        percentage: {value: 10}
      abort:
        httpStatus: 503
        percentage: {value: 0.5}
    mirror: {host: reviews, subset: v1}
    mirrorPercentage: {value: 20}
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - prefix: https://app.
      - regex: "https://.*\\.example\\.org"
      allowMethods: [GET, POST, OPTIONS]
      allowHeaders: [x-custom, authorization]
      exposeHeaders: [x-exposed]
      maxAge: 24h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    headers:
      request:
        set: {x-forwarded-env: prod}
        add: {x-trace: "1"}
        remove: [x-legacy]
      response:
        set: {cache-control: no-store}
    rewrite:
      uri: /v2/api
      authority: reviews-v2.default.svc.cluster.local
  - name: regex-rewrite
    match:
    - uri: {prefix: /old}
    rewrite:
      uriRegexRewrite: {match: "^/old/(.*)$", rewrite: "/new/\\1"}
    route:
    - destination: {host: reviews, subset: v1}
    mirrors:
    - destination: {host: reviews, subset: v3}
      percentage: {value: 5}
    fault:
      abort:
        grpcStatus: UNAVAILABLE
        percentage: {value: 1}
  - name: moved
    match:
    - uri: {prefix: /moved}
    redirect:
      uri: /new-home
      authority: new.example.com
      redirectCode: 302
      scheme: https
      port: 8443
  - name: moved-prefix
    match:
    - uri: {prefix: /legacy}
    redirect:
      prefixRewrite: /modern
      derivePort: FROM_REQUEST_PORT
  - name: maintenance
    match:
    - uri: {exact: /maintenance}
    directResponse:
      status: 503
      body: {string: "down for maintenance"}
  - name: teapot
    match:
    - uri: {exact: /teapot}
    directResponse:
      status: 418
      body: {bytes: "aSdtIGEgdGVhcG90"}
  - route:
    - destination: {host: reviews, subset: v1}
`,
	"seed/vs-gateway-bound.yaml": `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/edge-gateway, mesh-gateway, ./local-gateway]
  http:
  - match:
    - uri: {prefix: /shop}
      gateways: [istio-system/edge-gateway]
    route:
    - destination: {host: shop.default.svc.cluster.local, port: {number: 8080}}
  - match:
    - uri: {prefix: /team}
    delegate: {name: team-routes, namespace: team}
  - route:
    - destination: {host: web}
`,
	"seed/vs-delegate.yaml": `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: team-routes, namespace: team}
spec:
  http:
  - match:
    - uri: {prefix: /team/a}
    route:
    - destination: {host: team-a}
  - route:
    - destination: {host: team-b}
`,
	"seed/vs-tcp-tls.yaml": `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: l4, namespace: default}
spec:
  hosts: [db.example.com, "*.tls.example.com"]
  gateways: [mesh, istio-system/l4-gateway]
  tls:
  - match:
    - sniHosts: [api.tls.example.com]
      port: 443
      destinationSubnets: [10.0.0.0/8]
      sourceLabels: {app: client}
      gateways: [mesh]
      sourceNamespace: default
    route:
    - destination: {host: api.tls.example.com, port: {number: 443}}
      weight: 60
    - destination: {host: api-backup.tls.example.com, port: {number: 443}}
      weight: 40
  tcp:
  - match:
    - port: 5432
      destinationSubnets: [10.1.0.0/16, 10.2.0.1]
      sourceLabels: {app: client}
      sourceNamespace: default
    route:
    - destination: {host: db.example.com, port: {number: 5432}}
      weight: 100
  - route:
    - destination: {host: db.example.com, port: {number: 5433}}
`,
	"seed/dr-full.yaml": `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-full, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  exportTo: ["."]
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        enabled: true
        failover:
        - {from: us-east, to: us-west}
        failoverPriority: [example.com/rack]
      warmup:
        duration: 60s
        minimumPercent: 10
        aggression: 2
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}
        maxConnectionDuration: 1h
        idleTimeout: 1h
      http:
        http1MaxPendingRequests: 10
        http2MaxRequests: 100
        maxRequestsPerConnection: 10
        maxRetries: 3
        idleTimeout: 1h
        h2UpgradePolicy: UPGRADE
        maxConcurrentStreams: 100
    outlierDetection:
      consecutive5xxErrors: 5
      consecutiveGatewayErrors: 3
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 4
      interval: 10s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
      minHealthPercent: 20
    tls:
      mode: SIMPLE
      sni: reviews.example.com
      caCertificates: /etc/certs/ca.pem
      subjectAltNames: [reviews.example.com]
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer:
        consistentHash:
          httpCookie: {name: user, ttl: 10s, path: /}
          minimumRingSize: 1024
    - port: {number: 9443}
      tls:
        mode: MUTUAL
        clientCertificate: /etc/certs/cert.pem
        privateKey: /etc/certs/key.pem
        caCertificates: /etc/certs/ca.pem
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpHeaderName: x-user
          ringHash: {minimumRingSize: 2048}
  - name: v2
    labels: {version: v2, track: stable}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          useSourceIp: true
          maglev: {tableSize: 65537}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpQueryParameterName: user
      tls:
        mode: MUTUAL
        credentialName: reviews-client-cert
`,
	"seed/dr-selector.yaml": `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-selected, namespace: default}
spec:
  host: "*.default.svc.cluster.local"
  workloadSelector:
    matchLabels: {app: productpage}
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    tls: {mode: ISTIO_MUTUAL}
    tunnel:
      protocol: CONNECT
      targetHost: ratings.example.com
      targetPort: 443
`,
	"seed/gw-uds.yaml": `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: uds-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 0, name: uds, protocol: HTTP}
    bind: unix:///var/run/gateway.sock
    hosts: ["*"]
`,
	"seed/gw-full.yaml": `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*/shop.example.com", "./web.example.com", "default/*.example.org"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["shop.example.com"]
    name: https-shop
    tls:
      mode: SIMPLE
      credentialName: shop-cert
      minProtocolVersion: TLSV1_2
      maxProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]
  - port: {number: 8443, name: https-mtls, protocol: HTTPS}
    hosts: ["api.example.com"]
    tls:
      mode: MUTUAL
      serverCertificate: /etc/certs/server.pem
      privateKey: /etc/certs/key.pem
      caCertificates: /etc/certs/ca.pem
      subjectAltNames: [client.example.com]
  - port: {number: 9443, name: tls-pass, protocol: TLS}
    hosts: ["*.passthrough.example.com"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 15443, name: tls-mesh, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
    bind: 0.0.0.0
  - port: {number: 8080, name: grpc, protocol: GRPC}
    hosts: ["grpc.example.com"]
`,
	"seed/se-uds.yaml": `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local-socket, namespace: default}
spec:
  hosts: [socket.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: unix:///var/run/app.sock
`,
	"seed/se-full.yaml": `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-api, namespace: default}
spec:
  hosts: [api.example.com, api2.example.com]
  addresses: [240.0.0.10, 240.0.1.0/24]
  exportTo: ["*"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  - {number: 443, name: https, protocol: HTTPS}
  endpoints:
  - address: 10.0.0.1
    ports: {http: 8080, https: 8443}
    labels: {version: v1}
    network: network1
    locality: us-east/zone1/subzone1
    weight: 3
    serviceAccount: api-sa
  - address: 10.0.0.2
    labels: {version: v2}
  subjectAltNames: [spiffe://cluster.local/ns/default/sa/api-sa]
`,
	"seed/se-dns.yaml": `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-dns, namespace: default}
spec:
  hosts: [www.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 443, name: tls, protocol: TLS}
  endpoints:
  - address: www-1.example.com
  - address: www-2.example.com
    ports: {tls: 8443}
`,
	"seed/se-selector.yaml": `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm-service, namespace: default}
spec:
  hosts: [vm.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: vm}
`,
	"seed/se-dynamic-dns.yaml": `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wildcard, namespace: default}
spec:
  hosts: ["*.wild.example.com"]
  location: MESH_EXTERNAL
  resolution: DYNAMIC_DNS
  ports:
  - {number: 443, name: tls, protocol: TLS}
`,
	"seed/we-uds.yaml": `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-uds, namespace: default}
spec:
  address: unix:///var/run/vm.sock
  labels: {app: vm-uds}
`,
	"seed/we-full.yaml": `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: default}
spec:
  address: 10.10.0.5
  ports: {http: 8080, grpc: 9090}
  labels: {app: vm, version: v1}
  network: vm-network
  locality: us-west/zone2
  weight: 10
  serviceAccount: vm-sa
`,
	"seed/we-network-only.yaml": `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: default}
spec:
  network: remote-network
  labels: {app: vm}
`,
	"seed/sidecar-full.yaml": `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector:
    labels: {app: productpage}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: IPTABLES
  - port: {number: 9443, protocol: HTTPS, name: https}
    defaultEndpoint: unix:///var/run/app.sock
    tls:
      mode: SIMPLE
      serverCertificate: /etc/certs/server.pem
      privateKey: /etc/certs/key.pem
  egress:
  - port: {number: 9080, protocol: HTTP, name: egress-http}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: ["./reviews.default.svc.cluster.local", "istio-system/*"]
  - hosts: ["./*", "istio-system/*", "~/*.example.com"]
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: egress.istio-system.svc.cluster.local
      port: {number: 443}
  inboundConnectionPool:
    http: {http1MaxPendingRequests: 100}
`,
	"seed/sidecar-namespace.yaml": `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
`,
}
