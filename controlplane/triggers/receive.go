package triggers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/toktra/toktra/controlplane/store"
	"github.com/toktra/toktra/controlplane/triggers/bamboohr"
	"github.com/toktra/toktra/controlplane/triggers/okta"
)

// Receipt says what a delivery brought.
type Receipt struct {
	// Events counts the events in the delivery; Accepted those put in the
	// inbox now, Duplicates those already there, Ignored those that are
	// no departure (other event types, changes to other fields).
	Events, Accepted, Duplicates, Ignored int
	// Redelivery: the whole delivery was received before.
	Redelivery bool
}

// oktaIntegration loads the Okta integration of a hook and its secrets.
func (s *Service) hook(ctx context.Context, hookID, kind string, secrets any) (store.TriggerIntegration, error) {
	if hookID == "" || len(hookID) > 64 {
		return store.TriggerIntegration{}, ErrUnknownHook
	}
	in, err := s.store.GetTriggerIntegrationByHook(ctx, hookID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && in.Kind != kind) {
		return store.TriggerIntegration{}, ErrUnknownHook
	}
	if err != nil {
		return store.TriggerIntegration{}, err
	}
	if err := s.open(ctx, in, secrets); err != nil {
		return store.TriggerIntegration{}, err
	}
	return in, nil
}

// oktaSecretOK checks Okta's Authorization header against the hook's
// secret and, during its grace, the one rotated out.
func (s *Service) oktaSecretOK(in store.TriggerIntegration, sec oktaSecrets, header string) (string, bool) {
	if okta.CheckAuthorization(header, sec.Secret) {
		return sec.Secret, true
	}
	var st oktaSettings
	if sec.Previous != "" && json.Unmarshal(in.Settings, &st) == nil && s.clock.Now().Before(st.PreviousUntil) &&
		okta.CheckAuthorization(header, sec.Previous) {
		return sec.Previous, true
	}
	return "", false
}

// VerifyOktaHook answers Okta's one-time verification for a known hook;
// an Authorization header, when sent, must be the secret.
func (s *Service) VerifyOktaHook(ctx context.Context, hookID, authorization string) error {
	var sec oktaSecrets
	in, err := s.hook(ctx, hookID, SourceOkta, &sec)
	if err != nil {
		return err
	}
	if authorization != "" {
		if _, ok := s.oktaSecretOK(in, sec, authorization); !ok {
			return ErrUnauthenticated
		}
	}
	return nil
}

// ReceiveOkta accepts an Okta event hook delivery: authenticated by the
// Authorization header (and the signature header when present), every
// successful user deactivation is put in the inbox, once.
func (s *Service) ReceiveOkta(ctx context.Context, hookID, authorization, signature string, body []byte) (Receipt, error) {
	var sec oktaSecrets
	in, err := s.hook(ctx, hookID, SourceOkta, &sec)
	if err != nil {
		return Receipt{}, err
	}
	secret, ok := s.oktaSecretOK(in, sec, authorization)
	if !ok {
		return Receipt{}, fmt.Errorf("%w: the Authorization header is not the hook's secret", ErrUnauthenticated)
	}
	now := s.clock.Now()
	if signature != "" {
		switch err := okta.VerifySignature(signature, secret, body, now, s.cfg.ReplayWindow); {
		case errors.Is(err, okta.ErrStale):
			return Receipt{}, fmt.Errorf("%w: %v", ErrStale, err)
		case err != nil:
			return Receipt{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
		}
	}
	d, err := okta.Parse(body)
	if err != nil {
		return Receipt{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var st oktaSettings
	if err := json.Unmarshal(in.Settings, &st); err != nil {
		return Receipt{}, fmt.Errorf("reading okta settings: %w", err)
	}
	if st.OrgURL != "" && !strings.HasPrefix(strings.ToLower(d.Source), st.OrgURL+"/") {
		return Receipt{}, fmt.Errorf("%w: the delivery's source is not the configured Okta org", ErrUnauthenticated)
	}
	sum := sha256.Sum256(body)
	deacts := d.Deactivations()
	rec := Receipt{Events: len(d.Events), Ignored: len(d.Events)}
	err = s.store.InTx(ctx, func(st store.Store, tx any) error {
		rec.Accepted, rec.Duplicates, rec.Redelivery = 0, 0, false
		if signature != "" {
			// The same signed request twice is a replay, whatever it holds.
			if err := st.RecordTriggerDelivery(ctx, store.RecordTriggerDeliveryParams{OrgID: in.OrgID, Source: SourceOkta,
				DeliveryID: signatureID(signature), PayloadSHA256: sum[:], Events: len(d.Events), ReceivedAt: now}); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return ErrReplayed
				}
				return err
			}
		}
		err := st.RecordTriggerDelivery(ctx, store.RecordTriggerDeliveryParams{OrgID: in.OrgID, Source: SourceOkta,
			DeliveryID: d.EventID, PayloadSHA256: sum[:], Events: len(d.Events), Accepted: len(deacts), ReceivedAt: now})
		if errors.Is(err, store.ErrConflict) {
			// Okta delivers at least once: a redelivery brings nothing new.
			rec.Redelivery, rec.Duplicates = true, len(deacts)
			return nil
		}
		if err != nil {
			return err
		}
		for _, x := range deacts {
			detail, _ := json.Marshal(map[string]any{
				"published": x.Event.Published, "outcome": x.Event.Outcome,
				"target": map[string]string{"id": x.User.ID, "type": x.User.Type, "alternate_id": x.User.AlternateID, "display_name": x.User.DisplayName},
				"actor":  map[string]string{"id": x.Event.Actor.ID, "alternate_id": x.Event.Actor.AlternateID},
			})
			added, err := s.addEvent(ctx, st, tx, store.AddTriggerEventParams{
				OrgID: in.OrgID, Source: SourceOkta, DeliveryID: d.EventID, Subject: x.User.ID, VendorEventID: x.Event.UUID,
				EventType: x.Event.EventType, Email: x.Email, PayloadSHA256: sum[:], Detail: detail, State: store.TriggerPending, ReceivedAt: now,
			})
			if err != nil {
				return err
			}
			if added {
				rec.Accepted++
			} else {
				rec.Duplicates++
			}
		}
		return nil
	})
	if err != nil {
		return Receipt{}, err
	}
	rec.Ignored = len(d.Events) - len(uniqueEvents(deacts))
	s.log.Info("okta delivery received", "org", in.OrgID, "delivery", d.EventID, "events", rec.Events,
		"accepted", rec.Accepted, "duplicates", rec.Duplicates, "redelivery", rec.Redelivery)
	return rec, nil
}

func uniqueEvents(ds []okta.Deactivation) map[string]bool {
	m := map[string]bool{}
	for _, d := range ds {
		m[d.Event.UUID] = true
	}
	return m
}

// signatureID identifies a signed request by its signature's hash (the
// signature itself is not kept).
func signatureID(sig string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(sig))))
	return "sig:" + hex.EncodeToString(h[:])
}

// addEvent puts an event in the inbox and, when it is new, enqueues its
// processing in the same transaction.
func (s *Service) addEvent(ctx context.Context, st store.Store, tx any, p store.AddTriggerEventParams) (bool, error) {
	e, added, err := st.AddTriggerEvent(ctx, p)
	if err != nil || !added {
		return false, err
	}
	return true, s.enqueueProcess(ctx, tx, e, false)
}

// ReceiveBambooHR accepts a BambooHR webhook: its signature and timestamp
// checked, each change that may be a termination put in the inbox, once.
func (s *Service) ReceiveBambooHR(ctx context.Context, hookID, timestamp, signature string, body []byte) (Receipt, error) {
	var sec bambooSecrets
	in, err := s.hook(ctx, hookID, SourceBambooHR, &sec)
	if err != nil {
		return Receipt{}, err
	}
	now := s.clock.Now()
	switch err := bamboohr.Verify(body, timestamp, signature, sec.WebhookSecret, now, s.cfg.ReplayWindow); {
	case errors.Is(err, bamboohr.ErrStale):
		return Receipt{}, fmt.Errorf("%w: %v", ErrStale, err)
	case err != nil:
		return Receipt{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	changes, err := bamboohr.Parse(body)
	if err != nil {
		return Receipt{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	sum := sha256.Sum256(body)
	delivery := signatureID(signature)
	rec := Receipt{Events: len(changes)}
	err = s.store.InTx(ctx, func(st store.Store, tx any) error {
		rec.Accepted, rec.Duplicates, rec.Ignored = 0, 0, 0
		var relevant []bamboohr.Change
		for _, c := range changes {
			if c.MayTerminate() {
				relevant = append(relevant, c)
			} else {
				rec.Ignored++
			}
		}
		if err := st.RecordTriggerDelivery(ctx, store.RecordTriggerDeliveryParams{OrgID: in.OrgID, Source: SourceBambooHR,
			DeliveryID: delivery, PayloadSHA256: sum[:], Events: len(changes), Accepted: len(relevant), ReceivedAt: now}); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return ErrReplayed
			}
			return err
		}
		for _, c := range relevant {
			emp := bamboohr.FromFields(c.EmployeeID, c.Fields)
			detail, _ := json.Marshal(bambooDetail{Format: c.Format, Type: c.Type, Timestamp: c.Timestamp, ChangedFields: c.ChangedFields,
				Status: emp.Status, EmploymentStatus: emp.EmploymentStatus, TerminationDate: emp.TerminationDate})
			added, err := s.addEvent(ctx, st, tx, store.AddTriggerEventParams{
				OrgID: in.OrgID, Source: SourceBambooHR, DeliveryID: delivery, Subject: c.EmployeeID, VendorEventID: c.EventID(),
				EventType: c.Type, Email: emp.WorkEmail, PayloadSHA256: sum[:], Detail: detail, State: store.TriggerPending, ReceivedAt: now,
			})
			if err != nil {
				return err
			}
			if added {
				rec.Accepted++
			} else {
				rec.Duplicates++
			}
		}
		return nil
	})
	if err != nil {
		return Receipt{}, err
	}
	s.log.Info("bamboohr webhook received", "org", in.OrgID, "changes", rec.Events, "accepted", rec.Accepted, "duplicates", rec.Duplicates)
	return rec, nil
}

// bambooDetail is what a BambooHR inbox event keeps of its change.
type bambooDetail struct {
	Format           string   `json:"format"`
	Type             string   `json:"type"`
	Timestamp        string   `json:"timestamp"`
	ChangedFields    []string `json:"changed_fields,omitempty"`
	Status           string   `json:"status,omitempty"`
	EmploymentStatus string   `json:"employment_status,omitempty"`
	TerminationDate  string   `json:"termination_date,omitempty"`
	// Decision is filled by processing: what BambooHR said, and why.
	Decision string `json:"decision,omitempty"`
}
