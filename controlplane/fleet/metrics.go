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

	usageBatches *prometheus.CounterVec
	usageEvents  prometheus.Counter
	usageDropped prometheus.Counter
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
		usageBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "toktra_usage_batches_total",
			Help: "Usage batches from agents by result: stored, duplicate (re-sent, already stored) or rejected (invalid).",
		}, []string{"result"}),
		usageEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "toktra_usage_events_total", Help: "Usage events from agents stored.",
		}),
		usageDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "toktra_usage_events_dropped_total",
			Help: "Usage events agents reported dropping (buffer full while offline, or refused batches), as seen by this replica.",
		}),
	}
	for _, r := range []string{"stored", "duplicate", "rejected"} {
		m.usageBatches.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.acks, m.tamper, m.lockLatency, m.usageBatches, m.usageEvents, m.usageDropped, &commandStateCollector{st: st})
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
