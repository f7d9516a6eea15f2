package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"
)

func TestIdentityRoundTrip(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	for _, id := range []DeviceIdentity{
		{OrgID: testOrg, DeviceID: testDevice},
		{OrgID: "0b7c2e9a-5d1f-4c3e-9a8b-7f6e5d4c3b2a", DeviceID: "A_b-9"},
	} {
		_, cert, err := ca.SignDeviceCSR(newCSR(t, newP256(t), nil), id, testNow, 0)
		if err != nil {
			t.Fatalf("SignDeviceCSR(%v) = %v", id, err)
		}
		got, err := IdentityFromCert(cert)
		if err != nil || got != id {
			t.Errorf("IdentityFromCert(cert for %v) = %v, %v; want %v, nil", id, got, err, id)
		}
		if want := "toktra://org/" + id.OrgID + "/device/" + id.DeviceID; cert.URIs[0].String() != want {
			t.Errorf("URI SAN = %q; want %q", cert.URIs[0], want)
		}
	}
}

func TestIdentityFromCertRejects(t *testing.T) {
	t.Parallel()
	parse := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("url.Parse(%q) = %v", s, err)
		}
		return u
	}
	good := parse("toktra://org/o1/device/d1")
	tests := []struct {
		name string
		uris []*url.URL
	}{
		{"no URI", nil},
		{"two URIs", []*url.URL{good, parse("toktra://org/o2/device/d2")}},
		{"toktra and another URI", []*url.URL{good, parse("spiffe://example.org/x")}},
		{"wrong scheme", []*url.URL{parse("https://org/o1/device/d1")}},
		{"wrong host", []*url.URL{parse("toktra://orgs/o1/device/d1")}},
		{"port", []*url.URL{parse("toktra://org:1/o1/device/d1")}},
		{"user", []*url.URL{parse("toktra://u@org/o1/device/d1")}},
		{"query", []*url.URL{parse("toktra://org/o1/device/d1?x=1")}},
		{"fragment", []*url.URL{parse("toktra://org/o1/device/d1#f")}},
		{"trailing slash", []*url.URL{parse("toktra://org/o1/device/d1/")}},
		{"extra segment", []*url.URL{parse("toktra://org/o1/device/d1/x")}},
		{"not device", []*url.URL{parse("toktra://org/o1/user/d1")}},
		{"empty org", []*url.URL{parse("toktra://org//device/d1")}},
		{"empty device", []*url.URL{parse("toktra://org/o1/device/")}},
		{"dot in id", []*url.URL{parse("toktra://org/o.1/device/d1")}},
		{"percent-encoded slash", []*url.URL{parse("toktra://org/o%2F1/device/d1")}},
		{"percent-encoded letter", []*url.URL{parse("toktra://org/%6f1/device/d1")}},
		{"space", []*url.URL{parse("toktra://org/o%201/device/d1")}},
		{"opaque", []*url.URL{parse("toktra:org/o1/device/d1")}},
	}
	for _, tt := range tests {
		if id, err := IdentityFromCert(&x509.Certificate{URIs: tt.uris}); err == nil {
			t.Errorf("IdentityFromCert(%s) = %v, nil; want an error", tt.name, id)
		}
	}
	if id, err := IdentityFromCert(&x509.Certificate{URIs: []*url.URL{good}}); err != nil || id != (DeviceIdentity{OrgID: "o1", DeviceID: "d1"}) {
		t.Errorf("IdentityFromCert(good) = %v, %v; want o1/d1, nil", id, err)
	}
	if _, err := IdentityFromCert(nil); err == nil {
		t.Errorf("IdentityFromCert(nil) = nil error; want an error")
	}
}

func TestPeerIdentityNeedsVerifiedChain(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	id := DeviceIdentity{OrgID: testOrg, DeviceID: testDevice}
	_, cert, err := ca.SignDeviceCSR(newCSR(t, newP256(t), nil), id, testNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate that was only presented, never verified, names nobody.
	if got, err := PeerIdentity(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}); err == nil {
		t.Errorf("PeerIdentity(unverified) = %v, nil; want an error", got)
	}
	got, err := PeerIdentity(tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert, ca.Certificate()}}})
	if err != nil || got != id {
		t.Errorf("PeerIdentity(verified) = %v, %v; want %v, nil", got, err, id)
	}
}
