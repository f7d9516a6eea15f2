package anomaly

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Novelty thresholds. Something new to the user is reported when it has at
// least MinNoveltyEvents window requests (the larger of the agent's and the
// provider's event counts) and, when peers are known, it is
// neither common among them (CommonPeerShare or more used it in the period)
// nor being rolled out (RolloutAdopters peers, and RolloutShare of them, also
// started using it in the window). A user with little history has seen
// little, so for them it must also be rare among peers: under RarePeerShare.
const (
	MinNoveltyEvents = 3
	CommonPeerShare  = 0.25
	RarePeerShare    = 0.10
	RolloutAdopters  = 5
	RolloutShare     = 0.03
)

func (d *detection) checkNovelty() {
	established := d.activeAnyDays >= d.opts.MinBaselineDays
	p := d.h.Peers
	if !established && p == nil {
		if d.windowEvents > 0 {
			d.note("New models and providers not checked: %s in the baseline and no peer baseline to tell rare from common.",
				plural(d.activeAnyDays, "active day", "active days"))
		}
		return
	}
	newProviders := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(d.providers)) {
		n := d.providers[name]
		if n.inBaseline || n.windowEvents == 0 {
			continue
		}
		newProviders[name] = true
		share, peers, adopters := -1.0, 0, 0
		if p != nil && p.Peers > 0 {
			peers = p.Peers
			share = min(1, float64(p.ProviderUsers[name])/float64(peers))
			adopters = p.ProviderAdopters[name]
		}
		d.judgeNovelty(NewProvider, name, "", n, share, peers, adopters, established)
	}
	for _, name := range slices.Sorted(maps.Keys(d.models)) {
		n := d.models[name]
		if n.inBaseline || n.windowEvents == 0 {
			continue
		}
		prov := dominant(n.providers)
		if newProviders[prov] {
			continue // reported with its provider
		}
		share, peers, adopters := -1.0, 0, 0
		if p != nil && p.Peers > 0 {
			peers = p.Peers
			if pu := p.ProviderUsers[prov]; prov != "" && pu > 0 {
				peers = pu
			}
			share = min(1, float64(p.ModelUsers[name])/float64(peers))
			adopters = p.ModelAdopters[name]
		}
		d.judgeNovelty(NewModel, name, prov, n, share, peers, adopters, established)
	}
}

// dominant is the key with the most events, ties broken by name.
func dominant(m map[string]int) string {
	best, bestN := "", 0
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > bestN {
			best, bestN = k, m[k]
		}
	}
	return best
}

func (d *detection) judgeNovelty(typ Type, name, prov string, n *novelty, share float64, peers, adopters int, established bool) {
	label := fmt.Sprintf("provider %q", name)
	peerWord := "peers"
	if typ == NewModel {
		label = fmt.Sprintf("model %q", name)
		if prov != "" {
			label += fmt.Sprintf(" (%s)", prov)
			peerWord = prov + "-using peers"
		}
	}
	reqs := n.requests()
	if reqs < MinNoveltyEvents {
		d.note("The user tried %s, new to them, only %s in the window; not flagged.", label, plural(reqs, "time", "times"))
		return
	}
	limit := CommonPeerShare
	if !established {
		limit = RarePeerShare
		d.usedPeers = true
	}
	if share >= limit {
		d.note("%s is new to the user but %s of %s (%d) used it in the period; not flagged.",
			capitalize(label), percent(share), peerWord, peers)
		return
	}
	if float64(adopters) >= math.Max(RolloutAdopters, RolloutShare*float64(peers)) {
		d.note("%s is new to the user but %d of %s (%d) also started using it in the window, an org-wide rollout; not flagged.",
			capitalize(label), adopters, peerWord, peers)
		return
	}
	var wshare float64
	unit := "tokens"
	if d.windowTokens > 0 {
		wshare = float64(n.windowTokens) / float64(d.windowTokens)
	} else if d.windowEvents > 0 {
		wshare = float64(n.windowEvents) / float64(d.windowEvents)
		unit = "events"
	}
	sev := Low
	if typ == NewProvider {
		switch {
		case wshare >= 0.10:
			sev = High
		case wshare >= 0.01 || reqs >= 20:
			sev = Medium
		}
	} else {
		switch {
		case wshare >= 0.25:
			sev = High
		case wshare >= 0.05:
			sev = Medium
		}
	}
	fromDay := d.dayOf(n.first)
	toDay := d.dayOf(n.last)
	when := fmt.Sprintf("On %s", dateString(fromDay))
	if toDay != fromDay {
		when = fmt.Sprintf("From %s to %s", dateString(fromDay), dateString(toDay))
	}
	history := fmt.Sprintf("which they never used in their %d-day baseline (%s events)", d.baselineDays, count(float64(d.baseEvents)))
	basis := "user"
	if !established {
		history = fmt.Sprintf("which they had not used in their short history (%s)", plural(d.activeAnyDays, "active day", "active days"))
		basis = "user+peers"
	}
	peerText := "; no peer data to compare with"
	if share >= 0 {
		peerText = fmt.Sprintf(", and which %s of %s (%d of %d) used in the period, %d of them starting in the window",
			percent(share), peerWord, int(share*float64(peers)+0.5), peers, adopters)
	}
	expl := fmt.Sprintf("%s the user made %s to %s (%s tokens, %s of their window %s), %s%s.",
		when, plural(reqs, "request", "requests"), label, count(float64(n.windowTokens)), percent(wshare), unit, history, peerText)
	ev := Evidence{
		Basis: basis, Value: float64(reqs), Unit: "requests",
		Events: n.windowEvents, Tokens: n.windowTokens, WindowShare: round(wshare, 4),
		BaselineN: d.baseEvents, PeersCompared: peers, PeerAdopters: adopters,
	}
	if share >= 0 {
		ev.PeerShare = round(share, 4)
	}
	if typ == NewProvider {
		ev.Provider = name
	} else {
		ev.Model, ev.Provider = name, prov
	}
	d.add(Finding{Type: typ, Severity: sev, From: n.first, To: n.last, Evidence: ev, Explanation: expl})
}

func (d *detection) dayOf(t time.Time) int64 {
	return floorDiv(d.zone.local(t), secondsPerDay)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
