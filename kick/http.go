package kick

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse-iot/gatehouse/fault"
)

// baseURL parses a broker API base URL. Credentials belong in their own
// settings, never in the URL, where they would end up in error messages and
// logs.
func baseURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fault.New(fault.InvalidArgument, "%s URL is not a URL", what)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fault.New(fault.InvalidArgument, "%s URL must be http:// or https://", what)
	}
	if u.Host == "" {
		return nil, fault.New(fault.InvalidArgument, "%s URL has no host", what)
	}
	if u.User != nil {
		return nil, fault.New(fault.InvalidArgument, "%s URL must not carry credentials; use the user/password (or key/secret) settings", what)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fault.New(fault.InvalidArgument, "%s URL must not have a query or fragment", what)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// restAPI is a broker management API reached with HTTP basic auth: what
// the EMQX and RabbitMQ kickers share.
type restAPI struct {
	base       *url.URL
	user, pass string
	client     *http.Client
}

// newRESTAPI checks a broker API's URL and credentials; what names the API
// in errors, missing is the error for absent credentials.
func newRESTAPI(what, rawURL, user, pass, missing string, client *http.Client) (restAPI, error) {
	u, err := baseURL(what, rawURL)
	if err != nil {
		return restAPI{}, err
	}
	if user == "" || pass == "" {
		return restAPI{}, fault.New(fault.InvalidArgument, "%s", missing)
	}
	return restAPI{base: u, user: user, pass: pass, client: newHTTPClient(client)}, nil
}

// deleteDevice sends DELETE {base}{prefix}{device}, the device id escaped
// as one path segment, and judges the answer with ok.
func (a restAPI) deleteDevice(ctx context.Context, prefix, device string, header http.Header, ok func(int, []byte) bool) error {
	u := *a.base
	u.Path = a.base.Path + prefix + device
	u.RawPath = a.base.Path + prefix + url.PathEscape(device)
	req, err := http.NewRequest(http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.SetBasicAuth(a.user, a.pass)
	return call(ctx, a.client, req, ok)
}

// newHTTPClient returns the client broker calls use: bounded, and not
// following redirects, so credentials go only to the configured address.
func newHTTPClient(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// call sends one request and returns the status; the body of an unexpected
// answer is summarised into the error (bodies are broker messages, never
// our credentials).
func call(ctx context.Context, client *http.Client, req *http.Request, ok func(status int, body []byte) bool) error {
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if ok(resp.StatusCode, body) {
		return nil
	}
	return fmt.Errorf("%s %s: %s%s", req.Method, req.URL.Redacted(), resp.Status, snippet(body))
}

// statuses accepts the listed codes.
func statuses(codes ...int) func(int, []byte) bool {
	return func(c int, _ []byte) bool { return slices.Contains(codes, c) }
}

// unwrapURLError drops *url.Error's own copy of method and URL, which call
// already prints.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// snippet is a one-line, bounded excerpt of a response body.
func snippet(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(string(b)))
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return ": " + s
}
