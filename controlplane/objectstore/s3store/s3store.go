// Package s3store is the objectstore.Store on S3 Object Lock: every object
// is written in COMPLIANCE mode with a retain-until date, so the bucket
// itself refuses to delete the version or shorten its lock — for every
// user, the account root and this program included.
//
// Overwrites: Put sends If-None-Match: *, which S3 evaluates atomically, so
// of two concurrent writers of a key exactly one succeeds and the other
// gets 412 (or 409 ConditionalRequestConflict) and is answered ErrExists —
// or, if it wrote the same bytes (a retried step), the stored object.
// Should a server ignore the condition, versioning (which Object Lock
// requires) still keeps the first version, locked, under its own version
// id, and the version id Put returns names exactly the bytes it wrote.
//
// Integrity: the SHA-256 is sent as x-amz-checksum-sha256 (AWS refuses
// Object Lock parameters without a checksum, and checks the body against
// it), read back with every Get and Stat, and checked again as the
// content is read.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/toktra/toktra/controlplane/objectstore"
	"github.com/toktra/toktra/internal/clock"
)

// Config configures the S3 store.
type Config struct {
	// Bucket must have Object Lock enabled (default objectstore.DefaultBucket).
	Bucket string
	// Region of the bucket; empty takes it from the AWS configuration
	// (AWS_REGION, shared config).
	Region string
	// Endpoint overrides the S3 endpoint (MinIO-like servers, tests).
	Endpoint string
	// PathStyle addresses the bucket in the path rather than the host name.
	PathStyle bool
	// Retention is how long objects are locked at least (zero: 7 years).
	Retention objectstore.Period
	// Credentials, when nil, come from the default AWS chain
	// (environment, shared files, instance or task role).
	Credentials aws.CredentialsProvider
	// HTTPClient, when set, carries the requests (tests record them).
	HTTPClient *http.Client
	Clock      clock.Clock
	Logger     *slog.Logger
}

// Store writes evidence to an S3 bucket with Object Lock.
type Store struct {
	client    *s3.Client
	presign   *s3.PresignClient
	bucket    string
	retention objectstore.Period
	clock     clock.Clock
	log       *slog.Logger
}

var _ objectstore.Store = (*Store)(nil)

// Open builds the S3 client. It makes no request; call CheckWriteOnce.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = objectstore.DefaultBucket
	}
	if cfg.Retention == (objectstore.Period{}) {
		cfg.Retention = objectstore.DefaultRetention
	}
	if err := cfg.Retention.Validate(); err != nil {
		return nil, err
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("s3 endpoint %q: want an http:// or https:// URL", cfg.Endpoint)
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration for S3: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("s3 object store: no region; set --s3-region or AWS_REGION")
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		if cfg.HTTPClient != nil {
			o.HTTPClient = cfg.HTTPClient
		}
		// Check the checksum S3 returns against the body on every Get.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenSupported
	})
	return &Store{
		client: client, presign: s3.NewPresignClient(client), bucket: cfg.Bucket, retention: cfg.Retention,
		clock: cfg.Clock, log: cfg.Logger,
	}, nil
}

// Client is the S3 client, for tests and tools that inspect the bucket.
func (s *Store) Client() *s3.Client { return s.client }

// Bucket is the bucket the store writes to.
func (s *Store) Bucket() string { return s.bucket }

// Put uploads a new object locked in COMPLIANCE mode; see objectstore.Store.
func (s *Store) Put(ctx context.Context, p objectstore.PutParams) (objectstore.Object, error) {
	if err := objectstore.ValidateKey(p.Key); err != nil {
		return objectstore.Object{}, err
	}
	sum, err := objectstore.CheckBody(p)
	if err != nil {
		return objectstore.Object{}, err
	}
	if p.MinRetention != (objectstore.Period{}) {
		if err := p.MinRetention.Validate(); err != nil {
			return objectstore.Object{}, fmt.Errorf("org minimum: %w", err)
		}
	}
	ct := p.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	until := objectstore.RetainUntil(s.clock.Now(), s.retention, p.MinRetention)
	out, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:                    aws.String(s.bucket),
		Key:                       aws.String(p.Key),
		Body:                      bytes.NewReader(p.Body),
		ContentLength:             aws.Int64(int64(len(p.Body))),
		ContentType:               aws.String(ct),
		ChecksumAlgorithm:         types.ChecksumAlgorithmSha256,
		ChecksumSHA256:            aws.String(sum.Base64()),
		ObjectLockMode:            types.ObjectLockModeCompliance,
		ObjectLockRetainUntilDate: aws.Time(until),
		IfNoneMatch:               aws.String("*"),
	})
	if c := errorCode(err); c == "PreconditionFailed" || c == "ConditionalRequestConflict" {
		return s.existing(ctx, p.Key, sum, err)
	}
	if err != nil {
		return objectstore.Object{}, fmt.Errorf("uploading %s to bucket %s: %w", p.Key, s.bucket, err)
	}
	if aws.ToString(out.VersionId) == "" {
		return objectstore.Object{}, fmt.Errorf("uploading %s: bucket %s returned no version id (versioning off?): %w", p.Key, s.bucket, objectstore.ErrNotWriteOnce)
	}
	if out.ChecksumSHA256 != nil && aws.ToString(out.ChecksumSHA256) != sum.Base64() {
		return objectstore.Object{}, fmt.Errorf("uploading %s: server recorded sha-256 %s, sent %s: %w", p.Key, aws.ToString(out.ChecksumSHA256), sum.Base64(), objectstore.ErrCorrupt)
	}
	s.log.Debug("evidence uploaded", "bucket", s.bucket, "key", p.Key, "version", aws.ToString(out.VersionId), "retain_until", until)
	return objectstore.Object{
		Key: p.Key, VersionID: aws.ToString(out.VersionId), SHA256: sum, Size: int64(len(p.Body)), ContentType: ct,
		RetainUntil: until, Mode: objectstore.ModeCompliance,
	}, nil
}

// existing answers a Put whose key was taken: the stored object when it
// holds the same bytes, else ErrExists.
func (s *Store) existing(ctx context.Context, key string, sum objectstore.Digest, putErr error) (objectstore.Object, error) {
	obj, err := s.Stat(ctx, key, "")
	if err != nil {
		return objectstore.Object{}, fmt.Errorf("%s: %w (and reading the current version: %v)", key, objectstore.ErrExists, err)
	}
	if obj.SHA256 != sum {
		return objectstore.Object{}, fmt.Errorf("%s (version %s, sha-256 %s): %w", key, obj.VersionID, obj.SHA256, objectstore.ErrExists)
	}
	return obj, nil
}

func versionParam(v string) *string {
	if v == "" {
		return nil
	}
	return aws.String(v)
}

// Get downloads an object version, checking its SHA-256 as it is read.
func (s *Store) Get(ctx context.Context, key, versionID string) (io.ReadCloser, objectstore.Object, error) {
	if err := objectstore.ValidateKey(key); err != nil {
		return nil, objectstore.Object{}, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), VersionId: versionParam(versionID),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return nil, objectstore.Object{}, s.mapErr(err, "reading", key, versionID)
	}
	sum, err := parseChecksum(key, out.ChecksumSHA256)
	if err != nil {
		out.Body.Close()
		return nil, objectstore.Object{}, err
	}
	obj := objectstore.Object{
		Key: key, VersionID: aws.ToString(out.VersionId), SHA256: sum, Size: aws.ToInt64(out.ContentLength),
		ContentType: aws.ToString(out.ContentType), Mode: string(out.ObjectLockMode),
		RetainUntil: aws.ToTime(out.ObjectLockRetainUntilDate).UTC(),
	}
	if obj.Mode == "" {
		// Some servers send the lock headers only on HEAD or not at all.
		if obj.Mode, obj.RetainUntil, err = s.readRetention(ctx, key, obj.VersionID); err != nil {
			out.Body.Close()
			return nil, objectstore.Object{}, err
		}
	}
	return objectstore.VerifyingReader(out.Body, key, obj.Size, sum), obj, nil
}

// Stat describes an object version, its retention read back from the
// bucket with GetObjectRetention.
func (s *Store) Stat(ctx context.Context, key, versionID string) (objectstore.Object, error) {
	if err := objectstore.ValidateKey(key); err != nil {
		return objectstore.Object{}, err
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), VersionId: versionParam(versionID),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return objectstore.Object{}, s.mapErr(err, "reading", key, versionID)
	}
	sum, err := parseChecksum(key, head.ChecksumSHA256)
	if err != nil {
		return objectstore.Object{}, err
	}
	obj := objectstore.Object{
		Key: key, VersionID: aws.ToString(head.VersionId), SHA256: sum, Size: aws.ToInt64(head.ContentLength),
		ContentType: aws.ToString(head.ContentType),
	}
	if obj.Mode, obj.RetainUntil, err = s.readRetention(ctx, key, obj.VersionID); err != nil {
		return objectstore.Object{}, err
	}
	return obj, nil
}

// readRetention reads a version's lock back from the bucket; an unlocked
// version has an empty mode and zero time.
func (s *Store) readRetention(ctx context.Context, key, versionID string) (string, time.Time, error) {
	ret, err := s.client.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), VersionId: aws.String(versionID),
	})
	switch {
	case errorCode(err) == "NoSuchObjectLockConfiguration":
		return "", time.Time{}, nil
	case err != nil:
		return "", time.Time{}, s.mapErr(err, "reading the retention of", key, versionID)
	case ret.Retention == nil:
		return "", time.Time{}, nil
	}
	return string(ret.Retention.Mode), aws.ToTime(ret.Retention.RetainUntilDate).UTC(), nil
}

// PresignGet returns a SigV4 presigned GET of this exact version (an empty
// versionID is resolved to the current one first).
func (s *Store) PresignGet(ctx context.Context, key, versionID string, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > objectstore.MaxPresignTTL {
		return "", fmt.Errorf("presign ttl %v: must be positive and at most %v", ttl, objectstore.MaxPresignTTL)
	}
	if err := objectstore.ValidateKey(key); err != nil {
		return "", err
	}
	if versionID == "" {
		obj, err := s.Stat(ctx, key, "")
		if err != nil {
			return "", err
		}
		versionID = obj.VersionID
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), VersionId: aws.String(versionID),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presigning %s: %w", key, err)
	}
	return req.URL, nil
}

// Delete removes a version whose retention has ended. It checks first, and
// the bucket refuses anyway: a locked version cannot be deleted.
func (s *Store) Delete(ctx context.Context, key, versionID string) error {
	if versionID == "" {
		// Without a version S3 only adds a delete marker; the locked
		// version stays.
		return fmt.Errorf("%s: deleting needs the version id: %w", key, objectstore.ErrNotFound)
	}
	obj, err := s.Stat(ctx, key, versionID)
	if err != nil {
		return err
	}
	if s.clock.Now().Before(obj.RetainUntil) {
		return fmt.Errorf("%s version %s retained until %s: %w", key, versionID, obj.RetainUntil.Format(time.RFC3339), objectstore.ErrRetained)
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), VersionId: aws.String(versionID),
	})
	if errorCode(err) == "AccessDenied" {
		return fmt.Errorf("%s version %s: the bucket refused deletion (%v): %w", key, versionID, err, objectstore.ErrRetained)
	}
	if err != nil {
		return s.mapErr(err, "deleting", key, versionID)
	}
	return nil
}

// CheckWriteOnce checks that the bucket has Object Lock and versioning
// enabled; without them nothing stops an overwrite or a delete.
func (s *Store) CheckWriteOnce(ctx context.Context) error {
	out, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(s.bucket)})
	switch {
	case errorCode(err) == "ObjectLockConfigurationNotFoundError":
		return fmt.Errorf("%w: bucket %s has no Object Lock; create a bucket with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket)", objectstore.ErrNotWriteOnce, s.bucket)
	case err != nil:
		return fmt.Errorf("reading the Object Lock configuration of bucket %s: %w", s.bucket, err)
	case out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled:
		return fmt.Errorf("%w: bucket %s does not have Object Lock enabled", objectstore.ErrNotWriteOnce, s.bucket)
	}
	v, err := s.client.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		return fmt.Errorf("reading the versioning of bucket %s: %w", s.bucket, err)
	}
	if v.Status != types.BucketVersioningStatusEnabled {
		return fmt.Errorf("%w: bucket %s has versioning %q; Object Lock needs it enabled", objectstore.ErrNotWriteOnce, s.bucket, v.Status)
	}
	return nil
}

func parseChecksum(key string, b64 *string) (objectstore.Digest, error) {
	if b64 == nil {
		return objectstore.Digest{}, fmt.Errorf("%s: the bucket holds no SHA-256 checksum for it (not written by this store?): %w", key, objectstore.ErrCorrupt)
	}
	d, err := objectstore.ParseDigestBase64(*b64)
	if err != nil {
		return d, fmt.Errorf("%s: %v: %w", key, err, objectstore.ErrCorrupt)
	}
	return d, nil
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func (s *Store) mapErr(err error, doing, key, versionID string) error {
	var re *awshttp.ResponseError
	notFound := errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
	switch errorCode(err) {
	case "NoSuchKey", "NoSuchVersion", "NotFound":
		notFound = true
	case "NoSuchBucket":
		notFound = false
	}
	if notFound {
		return fmt.Errorf("%s %s version %q in bucket %s: %w", doing, key, versionID, s.bucket, objectstore.ErrNotFound)
	}
	return fmt.Errorf("%s %s version %q in bucket %s: %w", doing, key, versionID, s.bucket, err)
}
