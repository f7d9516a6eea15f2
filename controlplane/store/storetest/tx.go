package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/toktra/toktra/controlplane/store"
)

// testInTx: what fn does inside InTx is kept together or not at all, its
// notices arrive only after commit, and nested calls join the transaction.
func testInTx(t *testing.T, f *fixture) {
	u := f.user(t, f.orgA.ID, "tx@a.example")
	d := f.device(t, f.orgA.ID, u.ID, "SN-TX")
	notices, err := f.s.SubscribeCommands(f.ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Rolled back: neither the lockout nor the command stays, and the
	// sequence is not used up.
	errAbort := errors.New("abort")
	err = f.s.InTx(f.ctx, func(st store.Store, tx any) error {
		if tx == nil {
			t.Error("InTx gave a nil transaction handle")
		}
		l, _, err := st.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: u.ID, Trigger: "test", CreatedAt: base})
		if err != nil {
			return err
		}
		if _, err := st.InsertCommand(f.ctx, store.InsertCommandParams{
			OrgID: f.orgA.ID, DeviceID: d.ID, LockoutID: l.ID, Kind: store.CommandLock, CreatedAt: base,
			Sign: func(seq uint64) ([]byte, error) { return signedBytes(d.ID, seq), nil },
		}); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("InTx(abort) error = %v; want the fn's error", err)
	}
	if ls, _ := f.s.ListLockouts(f.ctx, f.orgA.ID); len(ls) != 0 {
		t.Errorf("after a rolled-back InTx, lockouts = %d; want 0", len(ls))
	}
	if cs, _ := f.s.ListUnackedCommands(f.ctx, f.orgA.ID, d.ID); len(cs) != 0 {
		t.Errorf("after a rolled-back InTx, commands = %d; want 0", len(cs))
	}
	select {
	case n := <-notices:
		t.Errorf("a rolled-back command was notified: %+v", n)
	case <-time.After(50 * time.Millisecond):
	}

	// Committed: both stay, the notice arrives after commit, nested InTx
	// joins, and Close and SubscribeCommands are refused inside.
	var lockoutID string
	err = f.s.InTx(f.ctx, func(st store.Store, tx any) error {
		l, _, err := st.CreateLockout(f.ctx, store.CreateLockoutParams{OrgID: f.orgA.ID, UserID: u.ID, Trigger: "test", CreatedAt: base})
		if err != nil {
			return err
		}
		lockoutID = l.ID
		if got, err := st.GetLockout(f.ctx, f.orgA.ID, l.ID); err != nil || got.ID != l.ID {
			t.Errorf("GetLockout inside InTx = %+v, %v; want the new lockout", got, err)
		}
		err = st.InTx(f.ctx, func(inner store.Store, innerTx any) error {
			_, err := inner.InsertCommand(f.ctx, store.InsertCommandParams{
				OrgID: f.orgA.ID, DeviceID: d.ID, LockoutID: l.ID, Kind: store.CommandLock, CreatedAt: base,
				Sign: func(seq uint64) ([]byte, error) { return signedBytes(d.ID, seq), nil },
			})
			return err
		})
		if err != nil {
			return err
		}
		select {
		case n := <-notices:
			t.Errorf("a notice arrived before commit: %+v", n)
		case <-time.After(50 * time.Millisecond):
		}
		if err := st.Close(); err == nil {
			t.Error("Close inside InTx = nil; want refused")
		}
		if _, err := st.SubscribeCommands(f.ctx); err == nil {
			t.Error("SubscribeCommands inside InTx = nil; want refused")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InTx(commit) error = %v", err)
	}
	if _, err := f.s.GetLockout(f.ctx, f.orgA.ID, lockoutID); err != nil {
		t.Errorf("GetLockout after commit: %v", err)
	}
	cs, err := f.s.ListUnackedCommands(f.ctx, f.orgA.ID, d.ID)
	if err != nil || len(cs) != 1 || cs[0].Seq != 1 {
		t.Fatalf("commands after commit = %+v, %v; want one with sequence 1 (the rolled-back one did not use it up)", cs, err)
	}
	select {
	case n := <-notices:
		if n.DeviceID != d.ID || n.Seq != 1 {
			t.Errorf("notice after commit = %+v; want device %s seq 1", n, d.ID)
		}
	case <-time.After(10 * time.Second):
		t.Error("no notice after commit")
	}
	if err := f.s.Ping(f.ctx); err != nil {
		t.Errorf("the store after InTx: %v", err)
	}
}
