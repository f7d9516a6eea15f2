package fleet

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/toktra/toktra/controlplane/store"
)

// Metrics are the fleet's Prometheus metrics.
type Metrics struct {
	connected   prometheus.Gauge
	acks        *prometheus.CounterVec
	tamper      prometheus.Counter
	lockLatency prometheus.Histogram
}

// NewMetrics creates the fleet metrics and registers them with reg (nil:
// unregistered), including a collector that counts commands by state.
func NewMetrics(reg prometheus.Registerer, st store.Store) *Metrics {
	m := &Metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "toktra_agents_connected", Help: "Agents with a stream open on this replica.",
		}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toktra_command_acks_total", Help: "Command acknowledgements by status and reason.",
		}, []string{"status", "reason"}),
		tamper: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "toktra_tamper_events_total", Help: "Tampering with enforcement reported by agents.",
		}),
		lockLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "toktra_lock_latency_seconds",
			Help:    "Time from a lock command's creation to the device's applied acknowledgement.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.acks, m.tamper, m.lockLatency, &commandStateCollector{st: st})
	}
	return m
}

var commandsDesc = prometheus.NewDesc("toktra_commands", "Commands by state, all orgs.", []string{"state"}, nil)

// commandStateCollector reads command counts from the store at scrape time.
type commandStateCollector struct{ st store.Store }

func (c *commandStateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- commandsDesc }

func (c *commandStateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.st.CountCommandsByState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(commandsDesc, err)
		return
	}
	for _, s := range []store.CommandState{store.CommandPending, store.CommandDelivered, store.CommandApplied, store.CommandRejected} {
		ch <- prometheus.MustNewConstMetric(commandsDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
