package localstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/objectstore/localstore"
	"github.com/toktra/toktra/internal/clock"
)

// The pipeline's upload step: store the snapshot PDF and its timestamp
// token, keep the version ids, and hand out a presigned link.
func Example() {
	dir, _ := os.MkdirTemp("", "evidence-example-")
	defer os.RemoveAll(dir)
	clk := clock.NewFake(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	st, err := localstore.Open(localstore.Config{Dir: dir, Clock: clk})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.CheckWriteOnce(ctx); err != nil {
		fmt.Println(err)
		return
	}

	pdf := []byte("%PDF-1.7 ...")
	key, _ := objectstore.SnapshotKey("org1", "lockout1", "snap1")
	obj, err := st.Put(ctx, objectstore.PutParams{
		Key: key, Body: pdf, SHA256: objectstore.Sum(pdf), ContentType: "application/pdf",
		MinRetention: objectstore.Period{Years: 10}, // the org's own minimum
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(obj.Key, obj.Mode, obj.RetainUntil.Format(time.DateOnly))

	_, err = st.Put(ctx, objectstore.PutParams{Key: key, Body: []byte("rewritten")})
	fmt.Println(errors.Is(err, objectstore.ErrExists))
	fmt.Println(errors.Is(st.Delete(ctx, key, obj.VersionID), objectstore.ErrRetained))

	u, _ := st.PresignGet(ctx, key, obj.VersionID, time.Hour)
	fmt.Println(strings.HasPrefix(u, "/v1/evidence/"+key+"?"))
	// Output:
	// orgs/org1/snapshots/lockout1/snap1.pdf LOCAL 2036-11-23
	// true
	// true
	// true
}
