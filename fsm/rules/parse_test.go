package rules

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// oneRule wraps a rule object into a document.
func oneRule(rule string) string { return `{"rules": [` + rule + `]}` }

// problemsOf parses doc and returns its problems as "path: msg" strings.
func problemsOf(t *testing.T, doc string) []string {
	t.Helper()
	set, err := Parse([]byte(doc))
	if err == nil {
		t.Fatalf("Parse(%s) = %+v, want an error", doc, set)
	}
	if set != nil {
		t.Errorf("Parse returned a set together with an error")
	}
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Parse error is %T (%v), want *ValidationError", err, err)
	}
	out := make([]string, len(verr.Errors))
	for i, fe := range verr.Errors {
		out[i] = fe.Error()
	}
	return out
}

func TestParseReportsEveryProblemWithItsPath(t *testing.T) {
	const limit = `"limit": {"rate": 1, "per": "1s"}`
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"rules missing", `{}`, []string{"rules: is required"}},
		{"rules null", `{"rules": null}`, []string{"rules: must be an array"}},
		{"rules not array", `{"rules": {}}`, []string{"rules: must be an array"}},
		{"document not object", `[]`, []string{"the document must be a JSON object"}},
		{"unknown top-level field", `{"rules": [], "version": 3}`, []string{"version: unknown field"}},
		{"duplicate top-level field", `{"rules": [], "rules": []}`, []string{"rules: duplicate field"}},
		{"rule not object", `{"rules": [42]}`, []string{"rules[0]: must be an object"}},
		{"unknown rule field", oneRule(`{"name": "a", "key": ["ip"], ` + limit + `, "limt": 1}`),
			[]string{"rules[0].limt: unknown field"}},
		{"odd unknown field name is quoted", oneRule(`{"name": "a", "key": ["ip"], ` + limit + `, "x.y": 1}`),
			[]string{`rules[0]["x.y"]: unknown field`}},
		{"name missing", oneRule(`{` + limit + `}`),
			[]string{"rules[0].name: is required"}},
		{"name wrong type", oneRule(`{"name": 7, "key": ["ip"], ` + limit + `}`),
			[]string{"rules[0].name: must be a string"}},
		{"name empty", oneRule(`{"name": "", "key": ["ip"], ` + limit + `}`),
			[]string{"rules[0].name: must not be empty"}},
		{"name bad characters", oneRule(`{"name": "a b", "key": ["ip"], ` + limit + `}`),
			[]string{"rules[0].name: must be 1-64 characters from [A-Za-z0-9_.-]"}},
		{"name too long", oneRule(`{"name": "` + strings.Repeat("n", 65) + `", "key": ["ip"], ` + limit + `}`),
			[]string{"rules[0].name: must be 1-64 characters from [A-Za-z0-9_.-]"}},
		{"duplicate names", `{"rules": [
			{"name": "a", "key": ["ip"], ` + limit + `},
			{"name": "b", "key": ["ip"], ` + limit + `},
			{"name": "a", "key": ["ip"], ` + limit + `}]}`,
			[]string{`rules[2].name: duplicate name "a" (also rules[0])`}},
		{"key not array", oneRule(`{"name": "a", "key": "ip", ` + limit + `}`),
			[]string{"rules[0].key: must be an array of strings"}},
		{"key element problems", oneRule(`{"name": "a", "key": ["ip", "", 3, "ip"], ` + limit + `}`),
			[]string{"rules[0].key[2]: must be a string", "rules[0].key[1]: must not be empty", `rules[0].key[3]: duplicate attribute "ip"`}},
		{"neither limit nor quota", oneRule(`{"name": "a", "key": ["ip"]}`),
			[]string{"rules[0]: must have exactly one of limit or quota"}},
		{"both limit and quota", oneRule(`{"name": "a", "key": ["ip"], ` + limit + `, "quota": {"limit": 1, "per": "day"}}`),
			[]string{"rules[0]: must have exactly one of limit or quota"}},
		{"limit wrong type", oneRule(`{"name": "a", "key": ["ip"], "limit": 5}`),
			[]string{"rules[0].limit: must be an object"}},
		{"limit null", oneRule(`{"name": "a", "key": ["ip"], "limit": null}`),
			[]string{"rules[0].limit: must be an object"}},
		{"limit fields missing", oneRule(`{"name": "a", "key": ["ip"], "limit": {}}`),
			[]string{"rules[0].limit.rate: is required", "rules[0].limit.per: is required"}},
		{"rate zero", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}`),
			[]string{"rules[0].limit.rate: must be > 0"}},
		{"rate negative", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": -3, "per": "1s"}}`),
			[]string{"rules[0].limit.rate: must be > 0"}},
		{"rate fractional", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1.5, "per": "1s"}}`),
			[]string{"rules[0].limit.rate: must be an integer"}},
		{"rate exponent", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1e3, "per": "1s"}}`),
			[]string{"rules[0].limit.rate: must be an integer"}},
		{"rate string", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": "5", "per": "1s"}}`),
			[]string{"rules[0].limit.rate: must be an integer"}},
		{"rate beyond int64", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 99999999999999999999, "per": "1s"}}`),
			[]string{"rules[0].limit.rate: is out of range"}},
		{"rate beyond Lua precision", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 9007199254740992, "per": "1s"}}`),
			[]string{"rules[0].limit.rate: must be <= 9007199254740991"}},
		{"rate above one per nanosecond", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1000000001, "per": "1s"}}`),
			[]string{"rules[0].limit.rate: 1000000001 per 1s is more than 1e9 per second (one token per nanosecond), the fastest a bucket refills"}},
		{"rate above one per nanosecond, short per", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 2, "per": "1ns"}}`),
			[]string{"rules[0].limit.rate: 2 per 1ns is more than 1e9 per second (one token per nanosecond), the fastest a bucket refills"}},
		{"invalid UTF-8 in a name", oneRule("{\"name\": \"a\xff\", \"key\": [\"ip\"], \"limit\": {\"rate\": 1, \"per\": \"1s\"}}"),
			[]string{"invalid UTF-8 at byte 22"}},
		{"invalid UTF-8 in a match value", oneRule("{\"name\": \"a\", \"match\": {\"route\": \"/\xc3\"}, \"key\": [\"ip\"], \"limit\": {\"rate\": 1, \"per\": \"1s\"}}"),
			[]string{"invalid UTF-8 at byte 46"}},
		{"per bad syntax", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": "5x"}}`),
			[]string{`rules[0].limit.per: invalid duration "5x"`}},
		{"per number", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": 1}}`),
			[]string{`rules[0].limit.per: must be a duration string such as "1s"`}},
		{"per zero", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": "0s"}}`),
			[]string{"rules[0].limit.per: must be > 0"}},
		{"per negative", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": "-1m"}}`),
			[]string{"rules[0].limit.per: must be > 0"}},
		{"burst negative", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": "1s", "burst": -1}}`),
			[]string{"rules[0].limit.burst: must be >= 0"}},
		{"burst fractional", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": "1s", "burst": 2.5}}`),
			[]string{"rules[0].limit.burst: must be an integer"}},
		{"unknown limit field", oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": "1s", "brust": 3}}`),
			[]string{"rules[0].limit.brust: unknown field"}},
		{"quota fields missing", oneRule(`{"name": "a", "key": ["ip"], "quota": {}}`),
			[]string{"rules[0].quota.limit: is required", "rules[0].quota.per: is required"}},
		{"quota bad values", oneRule(`{"name": "a", "key": ["ip"], "quota": {"limit": 0, "per": "year"}}`),
			[]string{"rules[0].quota.limit: must be > 0", "rules[0].quota.per: must be one of hour, day, week, month"}},
		{"quota per wrong type", oneRule(`{"name": "a", "key": ["ip"], "quota": {"limit": 1, "per": 30}}`),
			[]string{"rules[0].quota.per: must be a string"}},
		{"match not object", oneRule(`{"name": "a", "key": ["ip"], "match": ["route"], ` + limit + `}`),
			[]string{"rules[0].match: must be an object"}},
		{"match values", oneRule(`{"name": "a", "key": ["ip"], "match": {"route": "", "method": 1, "": "x"}, ` + limit + `}`),
			[]string{"rules[0].match.method: must be a string", `rules[0].match[""]: attribute name must not be empty`, "rules[0].match.route: must not be empty"}},
		{"match duplicate attribute", oneRule(`{"name": "a", "key": ["ip"], "match": {"route": "/a", "route": "/b"}, ` + limit + `}`),
			[]string{"rules[0].match.route: duplicate attribute"}},
		{"shadow wrong type", oneRule(`{"name": "a", "key": ["ip"], ` + limit + `, "shadow": "yes"}`),
			[]string{"rules[0].shadow: must be a boolean"}},
		{"problems in several rules", `{"rules": [
			{"name": "ok", "key": ["ip"], ` + limit + `},
			{"name": "a", "key": ["ip"], "limit": {"rate": 1, "per": "5x"}},
			{"name": "b", "key": ["ip"], "limit": {"rate": 0, "per": "1s"}}]}`,
			[]string{`rules[1].limit.per: invalid duration "5x"`, "rules[2].limit.rate: must be > 0"}},
		{"syntax error", `{"rules": [}`, []string{"invalid JSON at byte 12: invalid character '}' looking for beginning of value"}},
		{"trailing data", `{"rules": []} {}`, []string{"invalid JSON at byte 15: invalid character '{' after top-level value"}},
		{"empty input", ``, []string{"invalid JSON at byte 0: unexpected end of JSON input"}},
		{"too deep", `{"rules": [], "x": ` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`,
			[]string{"invalid JSON: nested deeper than 32 levels"}},
		{"larger than the API's body limit", `{"rules": [], "x": "` + strings.Repeat("x", MaxDocumentBytes) + `"}`,
			[]string{"document of 1048598 bytes is larger than 1048576 (1 MiB)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := problemsOf(t, tc.doc); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestValidationErrorJoinsProblems(t *testing.T) {
	_, err := Parse([]byte(oneRule(`{"name": "a", "key": ["ip"], "limit": {"rate": 0, "per": "5x"}}`)))
	want := `rules[0].limit.per: invalid duration "5x"; rules[0].limit.rate: must be > 0`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestParseValidDocument(t *testing.T) {
	set, err := Parse([]byte(`{"rules": [
		{"name": "per-ip", "match": {"route": "/api/*"}, "key": ["ip"], "limit": {"rate": 100, "per": "1s", "burst": 200}},
		{"name": "login", "match": {}, "key": ["ip", "method"], "limit": {"rate": 5, "per": "1m"}, "shadow": false},
		{"name": "tenant-monthly", "key": ["tenant"], "quota": {"limit": 1000000, "per": "month"}, "shadow": true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Set{Rules: []Rule{
		{Name: "per-ip", Match: map[string]string{"route": "/api/*"}, Key: []string{"ip"},
			Limit: &Limit{Rate: 100, Per: Duration(time.Second), Burst: 200}},
		{Name: "login", Key: []string{"ip", "method"}, Limit: &Limit{Rate: 5, Per: Duration(time.Minute), Burst: 5}},
		{Name: "tenant-monthly", Key: []string{"tenant"}, Quota: &Quota{Limit: 1000000, Per: Month}, Shadow: true},
	}}
	if !reflect.DeepEqual(set, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", set, want)
	}
}

func TestParseEmptyRuleList(t *testing.T) {
	set, err := Parse([]byte(`{"rules": []}`))
	if err != nil || set.Rules == nil || len(set.Rules) != 0 {
		t.Fatalf("Parse = %+v, %v; want an empty non-nil rule list", set, err)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, set := range []*Set{
		{},
		{Rules: []Rule{
			{Name: "a", Match: map[string]string{"route": "/x*", "method": "GET"}, Key: []string{"ip", "tenant"},
				Limit: &Limit{Rate: 7, Per: Duration(1500 * time.Millisecond), Burst: 9}, Shadow: true},
			{Name: "b", Key: []string{"tenant"}, Quota: &Quota{Limit: 3, Per: Week}},
		}},
	} {
		data, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(data)
		if err != nil {
			t.Fatalf("Parse(%s): %v", data, err)
		}
		if len(set.Rules) == 0 {
			if len(again.Rules) != 0 {
				t.Errorf("empty set came back as %+v", again)
			}
			continue
		}
		if !reflect.DeepEqual(again, set) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", data, again, set)
		}
		// Readers of trusted documents (snapshots, API answers) use encoding/json.
		var decoded Set
		if err := json.Unmarshal(data, &decoded); err != nil || !reflect.DeepEqual(&decoded, set) {
			t.Errorf("json.Unmarshal(%s) = %+v, %v", data, decoded, err)
		}
	}
}

func TestDurationMarshalsAsGoDurationString(t *testing.T) {
	data, err := json.Marshal(Limit{Rate: 1, Per: Duration(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rate":1,"per":"1m30s"}`; string(data) != want {
		t.Errorf("Marshal = %s, want %s", data, want)
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"5x"`), &d); err == nil {
		t.Errorf(`Unmarshal("5x") succeeded with %v`, d)
	}
}

func TestExampleFiles(t *testing.T) {
	for _, file := range []string{"rules.json", "rules_spec_example.json"} {
		data, err := os.ReadFile("../../testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(data); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	data, err := os.ReadFile("../../testdata/rules_invalid.json")
	if err != nil {
		t.Fatal(err)
	}
	got := problemsOf(t, string(data))
	want := []string{
		"rules[0].key[1]: must not be empty",
		"rules[0]: must have exactly one of limit or quota",
		"rules[1].limt: unknown field",
		"rules[2].limit.rate: must be an integer",
		`rules[2].limit.per: invalid duration "5x"`,
		`rules[3].name: duplicate name "login" (also rules[2])`,
		"rules[3].quota.per: must be one of hour, day, week, month",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules_invalid.json problems:\n got %q\nwant %q", got, want)
	}
}
