package api

import (
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// TestOpenAPIRefusesDrift: the document is built only when the route table
// and routeDocs agree both ways, so New fails on a route added without a
// descriptor and on a descriptor left behind by a removed route.
func TestOpenAPIRefusesDrift(t *testing.T) {
	var all []*echo.Route
	for key := range routeDocs {
		method, path, _ := strings.Cut(key, " ")
		all = append(all, &echo.Route{Method: method, Path: path, Name: "api.(*Server)." + strings.NewReplacer("/", "_", ":", "", ".", "_").Replace(key) + "-fm"})
	}
	if _, err := openAPIDocument(all); err != nil {
		t.Fatalf("every documented route present: %v", err)
	}
	for _, tc := range []struct {
		name   string
		routes []*echo.Route
		want   string
	}{
		{"undocumented route", append(all[:len(all):len(all)], &echo.Route{Method: "GET", Path: "/api/v1/new-thing", Name: "newThing"}),
			"GET /api/v1/new-thing has no entry in routeDocs"},
		{"removed route", all[1:], "matches no route"},
		{"two handlers, one operationId", append(all[:len(all)-1:len(all)-1], &echo.Route{Method: all[len(all)-1].Method, Path: all[len(all)-1].Path, Name: all[0].Name}),
			"is taken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := openAPIDocument(tc.routes); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
