package secrets_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// fakeKMS speaks the AWS KMS JSON 1.1 protocol (POST /, X-Amz-Target:
// TrentService.<Operation>, application/x-amz-json-1.1, errors as
// {"__type": ..., "message": ...}) for Encrypt and Decrypt, with real
// AES-GCM inside so that tampered ciphertext and a wrong encryption context
// fail as they do in KMS.
type fakeKMS struct {
	t testing.TB

	mu       sync.Mutex
	keys     map[string]cipher.AEAD // key ARN -> master key
	aliases  map[string]string      // alias name -> key ARN
	disabled map[string]bool        // key ARN
	denied   map[string]bool        // "kms:Encrypt" / "kms:Decrypt"
	calls    []string               // X-Amz-Target of each request
}

const (
	fakeRegion  = "us-east-1"
	fakeAccount = "111122223333"
)

func newFakeKMS(t testing.TB) (*fakeKMS, *httptest.Server) {
	t.Helper()
	f := &fakeKMS{
		t:        t,
		keys:     map[string]cipher.AEAD{},
		aliases:  map[string]string{},
		disabled: map[string]bool{},
		denied:   map[string]bool{},
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// createKey adds a symmetric key and returns its ARN.
func (f *fakeKMS) createKey(alias string) string {
	f.t.Helper()
	master := make([]byte, 32)
	rand.Read(master)
	block, _ := aes.NewCipher(master)
	aead, _ := cipher.NewGCM(block)
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := fmt.Sprintf("arn:aws:kms:%s:%s:key/%08d-12ab-34cd-56ef-1234567890ab", fakeRegion, fakeAccount, len(f.keys)+1)
	f.keys[arn] = aead
	if alias != "" {
		f.aliases[alias] = arn
	}
	return arn
}

func (f *fakeKMS) deny(action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denied[action] = true
}

func (f *fakeKMS) disable(arn string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disabled[arn] = true
}

func (f *fakeKMS) targets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// client returns an SDK client that talks to the fake with SigV4-signed
// requests and no retries.
func (f *fakeKMS) client(srv *httptest.Server) *kms.Client {
	return kms.New(kms.Options{
		Region:       fakeRegion,
		BaseEndpoint: aws.String(srv.URL),
		HTTPClient:   srv.Client(),
		Retryer:      aws.NopRetryer{},
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "secret", Source: "test"}, nil
		}),
	})
}

type kmsRequest struct {
	KeyId             string
	Plaintext         []byte
	CiphertextBlob    []byte
	EncryptionContext map[string]string
}

func (f *fakeKMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	f.mu.Lock()
	f.calls = append(f.calls, target)
	w.Header().Set("X-Amzn-RequestId", fmt.Sprintf("fa4e0000-0000-4000-8000-%012d", len(f.calls)))
	f.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeKMSError(w, http.StatusBadRequest, "UnknownOperationException", "bad method or path")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		writeKMSError(w, http.StatusBadRequest, "SerializationException", "content type "+ct)
		return
	}
	if auth := r.Header.Get("Authorization"); !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/") ||
		!strings.Contains(auth, "/"+fakeRegion+"/kms/aws4_request") {
		writeKMSError(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "request is not signed")
		return
	}
	var req kmsRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeKMSError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	switch target {
	case "TrentService.Encrypt":
		f.encrypt(w, &req)
	case "TrentService.Decrypt":
		f.decrypt(w, &req)
	default:
		writeKMSError(w, http.StatusBadRequest, "UnknownOperationException", target)
	}
}

// resolve finds a key by key ARN, alias name or alias ARN, or writes the
// error KMS would answer.
func (f *fakeKMS) resolve(w http.ResponseWriter, action, keyID string) (string, cipher.AEAD, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := keyID
	if a, ok := f.aliases[strings.TrimPrefix(keyID, "arn:aws:kms:"+fakeRegion+":"+fakeAccount+":")]; ok {
		arn = a
	}
	if f.denied[action] {
		writeKMSError(w, http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf(
			"User: arn:aws:iam::%s:user/toktra is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
			fakeAccount, action, arn, action))
		return "", nil, false
	}
	aead, ok := f.keys[arn]
	if !ok {
		writeKMSError(w, http.StatusBadRequest, "NotFoundException", fmt.Sprintf("Key '%s' does not exist", keyID))
		return "", nil, false
	}
	if f.disabled[arn] {
		writeKMSError(w, http.StatusBadRequest, "DisabledException", arn+" is disabled.")
		return "", nil, false
	}
	return arn, aead, true
}

// The fake ciphertext blob: len(arn) || arn || nonce || GCM(plaintext), the
// encryption context (as sorted JSON) authenticated.
func (f *fakeKMS) encrypt(w http.ResponseWriter, req *kmsRequest) {
	arn, aead, ok := f.resolve(w, "kms:Encrypt", req.KeyId)
	if !ok {
		return
	}
	ec, _ := json.Marshal(req.EncryptionContext)
	blob := append([]byte{byte(len(arn))}, arn...)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	blob = append(blob, nonce...)
	blob = aead.Seal(blob, nonce, req.Plaintext, ec)
	writeKMSJSON(w, map[string]any{"CiphertextBlob": blob, "KeyId": arn, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
}

func (f *fakeKMS) decrypt(w http.ResponseWriter, req *kmsRequest) {
	b := req.CiphertextBlob
	if len(b) < 1 || len(b) < 1+int(b[0])+12+16 {
		writeKMSError(w, http.StatusBadRequest, "InvalidCiphertextException", "")
		return
	}
	blobARN := string(b[1 : 1+int(b[0])])
	keyID := req.KeyId
	if keyID == "" {
		keyID = blobARN
	}
	arn, aead, ok := f.resolve(w, "kms:Decrypt", keyID)
	if !ok {
		return
	}
	if arn != blobARN {
		writeKMSError(w, http.StatusBadRequest, "IncorrectKeyException",
			"The key ID in the request does not identify a CMK that can perform this operation.")
		return
	}
	rest := b[1+int(b[0]):]
	ec, _ := json.Marshal(req.EncryptionContext)
	plaintext, err := aead.Open(nil, rest[:12], rest[12:], ec)
	if err != nil {
		writeKMSError(w, http.StatusBadRequest, "InvalidCiphertextException", "")
		return
	}
	writeKMSJSON(w, map[string]any{"KeyId": arn, "Plaintext": plaintext, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
}

func writeKMSJSON(w http.ResponseWriter, v any) {
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(v) // []byte fields become base64, as KMS's blobs do
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Write(buf.Bytes())
}

func writeKMSError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}
