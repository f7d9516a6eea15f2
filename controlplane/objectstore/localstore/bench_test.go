package localstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/toktra/toktra/controlplane/objectstore"
)

// BenchmarkPut writes a 4 MiB snapshot-sized object (synced to disk).
func BenchmarkPut(b *testing.B) {
	st, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	body := make([]byte, 4<<20)
	rand.Read(body)
	b.SetBytes(int64(len(body)))
	i := 0
	for b.Loop() {
		i++
		if _, err := st.Put(context.Background(), objectstore.PutParams{Key: fmt.Sprintf("orgs/o/snapshots/l/%d.pdf", i), Body: body}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/put")
}
