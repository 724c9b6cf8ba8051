package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-iot/gatehouse/api/apitypes"
	"github.com/gatehouse-iot/gatehouse/fault"
)

// client talks to a Gatehouse API for the factory-line commands.
type client struct {
	base  string
	token string
	http  *http.Client
}

// newClient trusts the system roots, or only caFile when given.
func newClient(server, adminToken, caFile string) (*client, error) {
	if server == "" {
		return nil, fault.New(fault.InvalidArgument, "--server is required")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := readPool(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &client{base: strings.TrimRight(server, "/"), token: adminToken,
		http: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}, nil
}

// withClientCert presents cert in TLS handshakes (renewal over mutual TLS).
func (c *client) withClientCert(cert tls.Certificate) {
	tr := c.http.Transport.(*http.Transport)
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
}

// do sends a JSON request and returns the response body on 2xx. Error
// responses come back as *fault.Error carrying the server's code.
func (c *client) do(method, path, accept string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	return c.send(method, path, accept, "application/json", body)
}

// send is do with a body of any type (a CSV, a CRL), read as it is sent.
func (c *client) send(method, path, accept, contentType string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return nil, fault.Wrap(err, fault.InvalidArgument, "bad server URL %q", c.base)
	}
	req.Header.Set("Content-Type", contentType)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fault.Wrap(err, fault.Unavailable, "cannot reach %s: %v", c.base, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<30))
	if err != nil {
		return nil, fault.Wrap(err, fault.Unavailable, "reading response: %v", err)
	}
	if res.StatusCode/100 != 2 {
		var eb apitypes.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			return nil, &fault.Error{Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return nil, fault.New(fault.Unavailable, "server answered %s", res.Status)
	}
	return b, nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// jsonError renders an error for --json output.
func jsonError(err error) map[string]any {
	code, msg := fault.CodeOf(err), fault.MessageOf(err)
	if code == fault.Internal {
		msg = err.Error()
	}
	return map[string]any{"ok": false, "error": map[string]any{"code": code, "message": msg}}
}

func fmtDuration(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
