package edgenode

import (
	"net/http"
	"strconv"
	"time"

	"github.com/edgecell/edgecell/edgenode/proxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newAdmin serves the operator endpoints: /healthz (the process runs),
// /readyz (a routing table is loaded, so requests can be routed, and the
// proxy is not overloaded: 503 saying why otherwise) and
// /metrics (Prometheus). They are on their own listener so the proxy
// listener carries only proxied traffic.
func (n *Node) newAdmin(metrics *proxy.Metrics) *http.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.registerMetrics(reg, metrics)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		rev := n.Revision()
		if rev == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("no routing table yet\n"))
			return
		}
		if why := n.proxy.Load().Overloaded(time.Now()); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("overloaded: " + why + "\n"))
			return
		}
		w.Write([]byte("ready at revision " + strconv.FormatUint(rev, 10) + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}
