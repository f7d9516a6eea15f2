package s3store

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/toktra/toktra/controlplane/objectstore"
)

// BenchmarkPut uploads a 4 MiB snapshot-sized object with Object Lock to
// the loopback gateway.
func BenchmarkPut(b *testing.B) {
	bucket := gateway.NewBucket(b, true)
	st, err := Open(context.Background(), Config{
		Bucket: bucket, Region: gateway.Region, Endpoint: gateway.Endpoint, PathStyle: true, Credentials: gateway.Credentials(),
	})
	if err != nil {
		b.Fatal(err)
	}
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
