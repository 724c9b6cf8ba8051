package idevid

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/csv"
	"encoding/pem"
	"errors"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"io"
	"strings"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// maxSerialHex bounds a serial's hex digits: RFC 5280 allows 20 octets; 32
// leaves room for non-conforming vendor CAs without accepting junk.
const maxSerialHex = 64

var (
	oidDeltaCRLIndicator     = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDistributionPt = asn1.ObjectIdentifier{2, 5, 29, 28}
)

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fault.New(fault.InvalidArgument, "PEM block %d is %q, not a CERTIFICATE", len(certs)+1, clip(block.Type))
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fault.Wrap(err, fault.InvalidArgument, "PEM certificate %d does not parse", len(certs)+1)
		}
		certs = append(certs, c)
		rest = r
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fault.New(fault.InvalidArgument, "the input has data that is not a PEM certificate after certificate %d", len(certs))
	}
	if len(certs) == 0 {
		return nil, fault.New(fault.InvalidArgument, "no PEM certificate found")
	}
	return certs, nil
}

// parseCRL refuses what Check could misread: a delta CRL (it lists only
// changes since a base CRL, so a serial's absence means nothing), a CRL
// with another critical extension it does not know, and one without
// nextUpdate (nothing would ever make it stale). An issuingDistributionPoint
// must name distribution point URIs only (CRLScope): a partition.
func parseCRL(data []byte, cas []*x509.Certificate) (*x509.RevocationList, error) {
	der := data
	if block, rest := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fault.New(fault.InvalidArgument, "the PEM block is %q, not an X509 CRL", clip(block.Type))
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, fault.New(fault.InvalidArgument, "the input has data after the CRL")
		}
		der = block.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "the CRL does not parse (PEM \"X509 CRL\" or DER expected)")
	}
	for _, ext := range crl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			return nil, fault.New(fault.InvalidArgument, "the CRL is a delta CRL: import the complete CRL")
		case ext.Id.Equal(oidIssuingDistributionPt):
			if _, err := scopeOf(ext.Value); err != nil {
				return nil, err
			}
		case ext.Critical:
			return nil, fault.New(fault.InvalidArgument, "the CRL has an unsupported critical extension %s", ext.Id)
		}
	}
	if crl.NextUpdate.IsZero() {
		return nil, fault.New(fault.InvalidArgument, "the CRL has no nextUpdate")
	}
	for _, ca := range cas {
		if ca != nil && bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			return crl, nil
		}
	}
	return nil, fault.New(fault.InvalidArgument, "the CRL issued by %q is not signed by any of the vendor's anchors or intermediates", crl.Issuer.String())
}

func parseAllowList(r io.Reader, max int) ([]AllowEntry, error) {
	br := bufio.NewReader(r)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	var (
		out   []AllowEntry
		seen  = map[string]bool{}
		first = true
	)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fault.New(fault.InvalidArgument, "allow-list line %d: %v", pe.StartLine, pe.Err)
			}
			return nil, fault.Wrap(err, fault.InvalidArgument, "the allow-list cannot be read")
		}
		line, _ := cr.FieldPos(0)
		field := strings.TrimSpace(rec[0])
		if field == "" && len(rec) == 1 {
			continue // a line of blanks only
		}
		if first {
			first = false
			if strings.EqualFold(field, "serial") {
				continue
			}
		}
		s, err := normalizeSerial(field)
		if err != nil {
			return nil, fault.New(fault.InvalidArgument, "allow-list line %d: %s", line, fault.MessageOf(err))
		}
		if seen[s] {
			continue
		}
		if max > 0 && len(out) >= max {
			return nil, fault.New(fault.InvalidArgument, "the allow-list has more than %d serials (line %d)", max, line)
		}
		seen[s] = true
		out = append(out, AllowEntry{Serial: s})
	}
}

func normalizeSerial(s string) (string, error) {
	if len(s) > 3*maxSerialHex+2 {
		return "", fault.New(fault.InvalidArgument, "serial is longer than %d hex digits", maxSerialHex)
	}
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X") {
		t = t[2:]
	}
	if t == "" {
		return "", fault.New(fault.InvalidArgument, "serial %q is empty", clip(s))
	}
	if t[0] == ':' || t[len(t)-1] == ':' || strings.Contains(t, "::") {
		return "", fault.New(fault.InvalidArgument, "serial %q has a misplaced ':' (hex, colons only between digits)", clip(s))
	}
	b := make([]byte, 0, len(t))
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == ':':
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			b = append(b, c)
		case c >= 'A' && c <= 'F':
			b = append(b, c+'a'-'A')
		default:
			return "", fault.New(fault.InvalidArgument, "serial %q is not hex (optional 0x, colons allowed)", clip(s))
		}
	}
	b = bytes.TrimLeft(b, "0")
	if len(b) == 0 {
		b = []byte("0")
	}
	if len(b) > maxSerialHex {
		return "", fault.New(fault.InvalidArgument, "serial is longer than %d hex digits", maxSerialHex)
	}
	return string(b), nil
}

// CRLScope returns the distribution point URIs an issuingDistributionPoint
// extension limits crl to, nil for a CRL with none (it covers all its
// issuer's certificates). Only a distributionPoint of URIs is understood: a
// CRL limited to user or CA certificates, to some reasons, or indirect is
// InvalidArgument. A CRL with a scope covers the certificates whose CRL
// distribution points name one of its URIs (RFC 5280 §5.2.5); its
// revocations count for every certificate of its issuer (a serial is one
// certificate), and a registry keeps one CRL per issuer and scope, so that
// importing one partition never replaces another.
func CRLScope(crl *x509.RevocationList) ([]string, error) {
	for _, ext := range crl.Extensions {
		if ext.Id.Equal(oidIssuingDistributionPt) {
			return scopeOf(ext.Value)
		}
	}
	return nil, nil
}

// scopeOf parses an IssuingDistributionPoint value (RFC 5280 §5.2.5).
func scopeOf(value []byte) ([]string, error) {
	refuse := func(why string) ([]string, error) {
		return nil, fault.New(fault.InvalidArgument, "the CRL's issuingDistributionPoint %s: import the issuer's complete CRL", why)
	}
	in := cryptobyte.String(value)
	var idp cryptobyte.String
	if !in.ReadASN1(&idp, cbasn1.SEQUENCE) || !in.Empty() {
		return refuse("does not parse")
	}
	if idp.Empty() {
		return nil, nil
	}
	var dp cryptobyte.String
	if !idp.ReadASN1(&dp, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return refuse("limits the CRL to some certificates, reasons or issuers")
	}
	if !idp.Empty() {
		return refuse("limits the CRL to some certificates, reasons or issuers")
	}
	var names cryptobyte.String
	if !dp.ReadASN1(&names, cbasn1.Tag(0).Constructed().ContextSpecific()) || !dp.Empty() {
		return refuse("names its distribution point relative to the issuer")
	}
	var uris []string
	for !names.Empty() {
		var uri cryptobyte.String
		if !names.ReadASN1(&uri, cbasn1.Tag(6).ContextSpecific()) {
			return refuse("names a distribution point that is not a URI")
		}
		uris = append(uris, string(uri))
	}
	if len(uris) == 0 {
		return refuse("names no distribution point")
	}
	return uris, nil
}
