package s3store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/controlplane/objectstore/objectstoretest"
	"github.com/toktra/toktra/internal/clock"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	objectstoretest.Exercise(t, func(t *testing.T) objectstoretest.Subject {
		f := setup(t, true)
		return objectstoretest.Subject{
			Store: f.store, Clock: f.clock, Retention: objectstore.DefaultRetention, Mode: objectstore.ModeCompliance,
			Fetch: fetch, MovesTime: false,
		}
	})
}

func putPDF(t *testing.T, f fixture, name string, body []byte) objectstore.Object {
	t.Helper()
	k, err := objectstore.SnapshotKey("org-a", "lockout-1", name)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := f.store.Put(context.Background(), objectstore.PutParams{Key: k, Body: body, SHA256: objectstore.Sum(body), ContentType: "application/pdf"})
	if err != nil {
		t.Fatalf("Put(%s) = %v", k, err)
	}
	return obj
}

// TestPutSendsChecksumAndLock asserts the upload's headers on the wire:
// AWS refuses Object Lock parameters without a checksum, the test server
// does not, so this test is what keeps the checksum there.
func TestPutSendsChecksumAndLock(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	body := []byte("%PDF-1.7 wire")
	obj := putPDF(t, f, "s1", body)
	puts := f.rec.find(http.MethodPut, obj.Key)
	if len(puts) != 1 {
		t.Fatalf("recorded %d PUTs of %s; want 1", len(puts), obj.Key)
	}
	h := puts[0].Header
	for name, want := range map[string]string{
		"X-Amz-Checksum-Sha256":        objectstore.Sum(body).Base64(),
		"X-Amz-Object-Lock-Mode":       "COMPLIANCE",
		"If-None-Match":                "*",
		"Content-Type":                 "application/pdf",
		"X-Amz-Sdk-Checksum-Algorithm": "SHA256",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("PUT header %s = %q; want %q", name, got, want)
		}
	}
	until, err := time.Parse(time.RFC3339, h.Get("X-Amz-Object-Lock-Retain-Until-Date"))
	if err != nil || !until.Equal(obj.RetainUntil) {
		t.Errorf("PUT header X-Amz-Object-Lock-Retain-Until-Date = %q (%v); want %v", h.Get("X-Amz-Object-Lock-Retain-Until-Date"), err, obj.RetainUntil)
	}
	if want := objectstore.RetainUntil(f.clock.Now(), objectstore.Period{Years: 7}, objectstore.Period{}); !obj.RetainUntil.Equal(want) {
		t.Errorf("Put().RetainUntil = %v; want %v (7 years on)", obj.RetainUntil, want)
	}
	if h.Get("X-Amz-Trailer") != "" {
		t.Errorf("PUT sent the checksum as a trailer (%q); want it as a header", h.Get("X-Amz-Trailer"))
	}
}

// TestServerRefusesChangesToLockedVersion proves the bucket itself, not
// our code, protects a stored version: the raw client tries every way to
// remove or weaken it.
func TestServerRefusesChangesToLockedVersion(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	ctx := context.Background()
	body := []byte("%PDF-1.7 locked")
	obj := putPDF(t, f, "s1", body)
	b, k, v := aws.String(f.bucket), aws.String(obj.Key), aws.String(obj.VersionID)

	if _, err := f.raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: k, VersionId: v}); err == nil {
		t.Error("DeleteObject(locked version) = nil; want refused")
	}
	if _, err := f.raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: k, VersionId: v, BypassGovernanceRetention: aws.Bool(true)}); err == nil {
		t.Error("DeleteObject(locked version, bypass governance) = nil; want refused in COMPLIANCE mode")
	}
	del, err := f.raw.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: b, Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: k, VersionId: v}}}})
	if err == nil && len(del.Errors) == 0 {
		t.Error("DeleteObjects(locked version) = no errors; want refused")
	}
	for _, r := range []types.ObjectLockRetention{
		{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: aws.Time(time.Now().Add(24 * time.Hour))},
		{Mode: types.ObjectLockRetentionModeGovernance, RetainUntilDate: aws.Time(obj.RetainUntil)},
	} {
		_, err := f.raw.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{Bucket: b, Key: k, VersionId: v, Retention: &r, BypassGovernanceRetention: aws.Bool(true)})
		if err == nil {
			t.Errorf("PutObjectRetention(%s until %v) on a COMPLIANCE version = nil; want refused", r.Mode, r.RetainUntilDate)
		}
	}
	_, err = f.raw.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: k, Body: strings.NewReader("forged"), IfNoneMatch: aws.String("*")})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusPreconditionFailed {
		t.Errorf("PutObject(If-None-Match: *) over the key = %v; want 412", err)
	}
	// Without the condition S3 adds a version and a delete without a
	// version adds a marker; neither touches the locked version.
	forged, err := f.raw.PutObject(ctx, &s3.PutObjectInput{Bucket: b, Key: k, Body: strings.NewReader("forged")})
	if err != nil {
		t.Fatalf("PutObject(new version) = %v", err)
	}
	if aws.ToString(forged.VersionId) == obj.VersionID {
		t.Fatalf("PutObject(new version) replaced version %s", obj.VersionID)
	}
	if _, err := f.raw.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: b, Key: k}); err != nil {
		t.Fatalf("DeleteObject(no version: delete marker) = %v", err)
	}

	rc, got, err := f.store.Get(ctx, obj.Key, obj.VersionID)
	if err != nil {
		t.Fatalf("Get(%s, %s) after the attempts = %v", obj.Key, obj.VersionID, err)
	}
	content, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(content, body) {
		t.Errorf("Get(locked version) after the attempts = %q, %v; want %q", content, err, body)
	}
	st, err := f.store.Stat(ctx, obj.Key, obj.VersionID)
	if err != nil || st.Mode != objectstore.ModeCompliance || !st.RetainUntil.Equal(obj.RetainUntil) || st.SHA256 != obj.SHA256 {
		t.Errorf("Stat(locked version) after the attempts = %+v, %v; want COMPLIANCE until %v, sha %s", st, err, obj.RetainUntil, obj.SHA256)
	}
	if got.SHA256 != obj.SHA256 {
		t.Errorf("Get().SHA256 = %s; want %s", got.SHA256, obj.SHA256)
	}
	// The presigned URL names the version, so it serves the original even
	// though newer versions and a delete marker came after it.
	u, err := f.store.PresignGet(ctx, obj.Key, obj.VersionID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "versionId="+obj.VersionID) {
		t.Errorf("PresignGet = %s; want versionId=%s in it", u, obj.VersionID)
	}
	resp, err := fetch(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(served, body) {
		t.Errorf("GET presigned(version) = %d %q; want 200 %q", resp.StatusCode, served, body)
	}
	// And the store's own Delete refuses before asking.
	if err := f.store.Delete(ctx, obj.Key, obj.VersionID); !errors.Is(err, objectstore.ErrRetained) {
		t.Errorf("Delete(locked) = %v; want ErrRetained", err)
	}
}

func TestServerRefusesWrongChecksum(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	ctx := context.Background()
	_, err := f.raw.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(f.bucket), Key: aws.String("orgs/o/x.pdf"), Body: strings.NewReader("body"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256, ChecksumSHA256: aws.String(objectstore.Sum([]byte("other")).Base64()),
		ObjectLockMode: types.ObjectLockModeCompliance, ObjectLockRetainUntilDate: aws.Time(time.Now().Add(time.Hour)),
	})
	if err == nil {
		t.Error("PutObject(body with another body's sha-256) = nil; want refused")
	}
	if _, err := f.store.Stat(ctx, "orgs/o/x.pdf", ""); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Stat after a refused upload = %v; want ErrNotFound", err)
	}
}

// TestDeleteAfterRetention waits out a two-second lock (the server's clock
// cannot be moved): the bucket and the store refuse before, allow after.
func TestDeleteAfterRetention(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	ctx := context.Background()
	until := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	body := []byte("short")
	k := "orgs/o/short.pdf"
	out, err := f.raw.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(f.bucket), Key: aws.String(k), Body: bytes.NewReader(body),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256, ChecksumSHA256: aws.String(objectstore.Sum(body).Base64()),
		ObjectLockMode: types.ObjectLockModeCompliance, ObjectLockRetainUntilDate: aws.Time(until),
	})
	if err != nil {
		t.Fatal(err)
	}
	v := aws.ToString(out.VersionId)
	u, err := f.store.PresignGet(ctx, k, v, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Delete(ctx, k, v); !errors.Is(err, objectstore.ErrRetained) {
		t.Errorf("Delete before %v = %v; want ErrRetained", until, err)
	}
	time.Sleep(time.Until(until) + 1500*time.Millisecond)
	f.clock.Set(time.Now())
	if err := f.store.Delete(ctx, k, v); err != nil {
		t.Fatalf("Delete after %v = %v; want nil", until, err)
	}
	if _, _, err := f.store.Get(ctx, k, v); !errors.Is(err, objectstore.ErrNotFound) {
		t.Errorf("Get after Delete = %v; want ErrNotFound", err)
	}
	resp, err := fetch(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET a presigned URL past its 1s expiry = %d; want 403", resp.StatusCode)
	}
}

func TestCheckWriteOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	locked := setup(t, true)
	if err := locked.store.CheckWriteOnce(ctx); err != nil {
		t.Errorf("CheckWriteOnce(object lock bucket) = %v; want nil", err)
	}
	plain := setup(t, false)
	if err := plain.store.CheckWriteOnce(ctx); !errors.Is(err, objectstore.ErrNotWriteOnce) {
		t.Errorf("CheckWriteOnce(bucket without object lock) = %v; want ErrNotWriteOnce", err)
	}
	// Versioning alone is not Object Lock.
	versioned := setup(t, false)
	if _, err := versioned.raw.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket: aws.String(versioned.bucket), VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	}); err != nil {
		t.Fatal(err)
	}
	if err := versioned.store.CheckWriteOnce(ctx); !errors.Is(err, objectstore.ErrNotWriteOnce) {
		t.Errorf("CheckWriteOnce(versioned bucket without object lock) = %v; want ErrNotWriteOnce", err)
	}
	missing, err := Open(ctx, Config{Bucket: "toktra-missing-bucket", Region: gateway.Region, Endpoint: gateway.Endpoint, PathStyle: true, Credentials: gateway.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.CheckWriteOnce(ctx); err == nil {
		t.Error("CheckWriteOnce(missing bucket) = nil; want an error")
	}
	// A Put to a bucket without Object Lock fails rather than storing an
	// unlocked object.
	if _, err := plain.store.Put(ctx, objectstore.PutParams{Key: "orgs/o/x.pdf", Body: []byte("x")}); err == nil {
		t.Error("Put(bucket without object lock) = nil; want an error")
	}
}

// awsCLI runs Debian's awscli against the gateway: an independent client
// reading what the store wrote.
func awsCLI(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := "/usr/bin/aws"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("aws"); err != nil {
			t.Fatalf("awscli not installed (apt-get install -y awscli): %v", err)
		}
	}
	cmd := exec.Command(bin, append(args, "--endpoint-url", gateway.Endpoint, "--output", "json")...)
	cmd.Env = append(os.Environ(), gateway.Env()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, errors.Join(err, errors.New(stderr.String()))
	}
	return out, nil
}

func TestAWSCLIReadsRetention(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	body := []byte("%PDF-1.7 cli")
	obj := putPDF(t, f, "s1", body)

	out, err := awsCLI(t, "s3api", "get-object-retention", "--bucket", f.bucket, "--key", obj.Key, "--version-id", obj.VersionID)
	if err != nil {
		t.Fatalf("aws s3api get-object-retention = %v", err)
	}
	var ret struct {
		Retention struct {
			Mode            string
			RetainUntilDate time.Time
		}
	}
	if err := json.Unmarshal(out, &ret); err != nil {
		t.Fatalf("aws s3api get-object-retention output %s: %v", out, err)
	}
	if ret.Retention.Mode != "COMPLIANCE" || !ret.Retention.RetainUntilDate.Equal(obj.RetainUntil) {
		t.Errorf("aws s3api get-object-retention = %+v; want COMPLIANCE until %v", ret.Retention, obj.RetainUntil)
	}

	out, err = awsCLI(t, "s3api", "head-object", "--bucket", f.bucket, "--key", obj.Key, "--version-id", obj.VersionID, "--checksum-mode", "ENABLED")
	if err != nil {
		t.Fatalf("aws s3api head-object = %v", err)
	}
	var head struct {
		ChecksumSHA256, VersionId, ObjectLockMode, ContentType string
		ContentLength                                          int64
	}
	if err := json.Unmarshal(out, &head); err != nil {
		t.Fatalf("aws s3api head-object output %s: %v", out, err)
	}
	if head.ChecksumSHA256 != obj.SHA256.Base64() || head.VersionId != obj.VersionID || head.ObjectLockMode != "COMPLIANCE" || head.ContentLength != int64(len(body)) {
		t.Errorf("aws s3api head-object = %+v; want sha %s, version %s, COMPLIANCE, %d bytes", head, obj.SHA256.Base64(), obj.VersionID, len(body))
	}

	out, err = awsCLI(t, "s3api", "get-object-lock-configuration", "--bucket", f.bucket)
	if err != nil || !strings.Contains(string(out), `"Enabled"`) {
		t.Errorf("aws s3api get-object-lock-configuration = %s, %v; want ObjectLockEnabled Enabled", out, err)
	}
	if out, err := awsCLI(t, "s3api", "delete-object", "--bucket", f.bucket, "--key", obj.Key, "--version-id", obj.VersionID); err == nil {
		t.Errorf("aws s3api delete-object --version-id (locked) = %s, nil; want refused", out)
	}
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out, err := awsCLI(t, "s3api", "put-object-retention", "--bucket", f.bucket, "--key", obj.Key, "--version-id", obj.VersionID,
		"--retention", "Mode=COMPLIANCE,RetainUntilDate="+later); err == nil {
		t.Errorf("aws s3api put-object-retention (shorter) = %s, nil; want refused", out)
	}
	// The object is still there, intact, for the CLI too.
	dst := t.TempDir() + "/s1.pdf"
	if _, err := awsCLI(t, "s3api", "get-object", "--bucket", f.bucket, "--key", obj.Key, "--version-id", obj.VersionID, dst); err != nil {
		t.Fatalf("aws s3api get-object = %v", err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, body) {
		t.Errorf("aws s3api get-object wrote %q, %v; want %q", got, err, body)
	}
}

func TestOpenValidates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := Open(ctx, Config{Region: "us-east-1", Retention: objectstore.Period{Years: -1}, Credentials: gateway.Credentials()}); err == nil {
		t.Error("Open(retention -1y) = nil error; want an error")
	}
	for _, e := range []string{"ftp://host", "localhost:9000", "http://", "::"} {
		if _, err := Open(ctx, Config{Region: "us-east-1", Endpoint: e, Credentials: gateway.Credentials()}); err == nil {
			t.Errorf("Open(endpoint %q) = nil error; want an error", e)
		}
	}
	st, err := Open(ctx, Config{Region: "eu-west-1", Credentials: gateway.Credentials(), Clock: clock.Real{}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != objectstore.DefaultBucket {
		t.Errorf("Open(no bucket).Bucket() = %q; want %q", st.Bucket(), objectstore.DefaultBucket)
	}
}
