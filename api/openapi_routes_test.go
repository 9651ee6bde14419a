package api

import (
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/openapi"
	"github.com/sluicehq/sluice/api/top"
	"github.com/sluicehq/sluice/node/engine"
)

// Every route the server registers (with the admin and usage routes on) is
// in the OpenAPI document, and the document describes no route the server
// lacks. A route served for any method (forward-auth) must be documented
// for GET at least.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	e := engine.New()
	srv, err := NewServer(Config{Engine: e, Admin: &fakeAdmin{}, Usage: e, NodeInfo: func() admin.NodeInfo { return admin.NodeInfo{} },
		Top: &top.Service{}})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string][]string{} // OpenAPI path → methods
	for _, r := range srv.router.Routes() {
		p := regexp.MustCompile(`:([a-z_]+)`).ReplaceAllString(r.Path, "{$1}")
		served[p] = append(served[p], strings.ToLower(r.Method))
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Document, &doc); err != nil {
		t.Fatal(err)
	}
	for path, methods := range served {
		documented := doc.Paths[path]
		if documented == nil {
			t.Errorf("route %s %v is not in the OpenAPI document", path, methods)
			continue
		}
		if len(methods) >= len(anyMethods) {
			methods = []string{"get"}
		}
		for _, m := range methods {
			if documented[m] == nil {
				t.Errorf("route %s %s is not in the OpenAPI document", strings.ToUpper(m), path)
			}
		}
	}
	for path, ops := range doc.Paths {
		for m := range ops {
			if !slices.Contains(served[path], m) {
				t.Errorf("the OpenAPI document describes %s %s, which the server does not serve (it serves %v)", strings.ToUpper(m), path, slices.Sorted(maps.Keys(served)))
			}
		}
	}
}

// anyMethods are the methods gin registers for a route added with Any.
var anyMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodHead, http.MethodOptions, http.MethodDelete, http.MethodConnect, http.MethodTrace}
