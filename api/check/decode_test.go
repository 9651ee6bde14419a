package check

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestDecodeRequestAccepts(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Request
	}{
		{"empty object", `{}`, Request{}},
		{"empty attributes", `{"attributes": {}}`, Request{}},
		{"typical", string(typicalBody), Request{Attributes: Attrs{
			{"ip", "203.0.113.7"}, {"route", "/api/orders"}, {"method", "GET"}, {"tenant", "acme"}}, Cost: 1}},
		{"whitespace everywhere", " \n\t{ \"cost\" : 7 , \"attributes\" : { \"a\" : \"b\" } } \r\n",
			Request{Attributes: Attrs{{"a", "b"}}, Cost: 7}},
		{"largest cost", `{"cost": 9223372036854775807}`, Request{Cost: 1<<63 - 1}},
		{"escaped field name", `{"\u0063ost": 2}`, Request{Cost: 2}},
		{"empty value", `{"attributes": {"ip": ""}}`, Request{Attributes: Attrs{{"ip", ""}}}},
		{"simple escapes", `{"attributes": {"k": "\"\\\/\b\f\n\r\t"}}`,
			Request{Attributes: Attrs{{"k", "\"\\/\b\f\n\r\t"}}}},
		{"unicode escapes", `{"attributes": {"\u006b": "\u0041\u00e9\u20AC\ud83d\ude00"}}`,
			Request{Attributes: Attrs{{"k", "Aé€😀"}}}},
		{"escape between plain text", `{"attributes": {"k": "ab\ncd\u0021ef"}}`,
			Request{Attributes: Attrs{{"k", "ab\ncd!ef"}}}},
		{"lone high surrogate", `{"attributes": {"k": "\ud800"}}`, Request{Attributes: Attrs{{"k", "\ufffd"}}}},
		{"lone low surrogate", `{"attributes": {"k": "\udc00x"}}`, Request{Attributes: Attrs{{"k", "\ufffdx"}}}},
		{"high surrogate then non-surrogate", `{"attributes": {"k": "\ud800\u0041"}}`,
			Request{Attributes: Attrs{{"k", "\ufffdA"}}}},
		{"two high surrogates then low", `{"attributes": {"k": "\ud800\ud800\udc00"}}`,
			Request{Attributes: Attrs{{"k", "\ufffd\U00010000"}}}},
		{"raw UTF-8", `{"attributes": {"город": "日本 héllo"}}`, Request{Attributes: Attrs{{"город", "日本 héllo"}}}},
		{"raw U+FFFD is valid UTF-8", "{\"attributes\": {\"k\": \"\xef\xbf\xbd\"}}", Request{Attributes: Attrs{{"k", "\ufffd"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			var got Request
			if err := d.DecodeRequest([]byte(tt.body), &got); err != nil {
				t.Fatalf("DecodeRequest(%s): %v", tt.body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeRequest(%s) = %#v, want %#v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	const (
		notInt   = "must be an integer >= 1"
		notStr   = "must be a string"
		notObj   = "must be an object"
		dupField = "duplicate field"
		unknown  = "unknown field"
	)
	tests := []struct {
		body, field, msg string // msg is a substring of the error message
	}{
		{``, "", "offset 0: unexpected end of input"},
		{`   `, "", "offset 3: unexpected end of input"},
		{`[]`, "", "body must be a JSON object"},
		{`"x"`, "", "body must be a JSON object"},
		{`null`, "", "body must be a JSON object"},
		{`12`, "", "body must be a JSON object"},
		{`x`, "", `offset 0: unexpected 'x'`},
		{`{"foo": 1}`, "foo", unknown},
		{`{"Cost": 1}`, "Cost", unknown},
		{`{"cost": 1, "attributes": {}, "x\ny": 1}`, "x\ny", unknown},
		{`{"attributes": null}`, "attributes", notObj},
		{`{"attributes": []}`, "attributes", notObj},
		{`{"attributes": "ip"}`, "attributes", notObj},
		{`{"attributes": {"ip": 1}}`, "attributes.ip", notStr},
		{`{"attributes": {"ip": null}}`, "attributes.ip", notStr},
		{`{"attributes": {"ip": true}}`, "attributes.ip", notStr},
		{`{"attributes": {"ip": {"a": "b"}}}`, "attributes.ip", notStr},
		{`{"attributes": {"ip": ["a"]}}`, "attributes.ip", notStr},
		{`{"attributes": {"ip": "a", "ip": "b"}}`, "attributes.ip", "duplicate attribute"},
		{`{"attributes": {"i\u0070": "a", "ip": "b"}}`, "attributes.ip", "duplicate attribute"},
		{`{"attributes": {"": "a"}}`, "attributes", "attribute names must not be empty"},
		{`{"attributes": {}, "attributes": {}}`, "attributes", dupField},
		{`{"cost": 1, "cost": 2}`, "cost", dupField},
		{`{"cost": 0}`, "cost", notInt},
		{`{"cost": -0}`, "cost", notInt},
		{`{"cost": -1}`, "cost", notInt},
		{`{"cost": 1.5}`, "cost", notInt},
		{`{"cost": 1.0}`, "cost", notInt},
		{`{"cost": 1e3}`, "cost", notInt},
		{`{"cost": 1E+3}`, "cost", notInt},
		{`{"cost": 10e-1}`, "cost", notInt},
		{`{"cost": "1"}`, "cost", notInt},
		{`{"cost": null}`, "cost", notInt},
		{`{"cost": true}`, "cost", notInt},
		{`{"cost": [1]}`, "cost", notInt},
		{`{"cost": {}}`, "cost", notInt},
		{`{"cost": 9223372036854775808}`, "cost", "must be at most 9223372036854775807"},
		{`{"cost": 99999999999999999999999999999}`, "cost", "must be at most"},
		{`{"cost": 1}x`, "", "offset 11: unexpected data after the JSON object"},
		{`{"cost": 1} {}`, "", "offset 12: unexpected data after"},
		{`{"cost": 01}`, "", "offset 10: unexpected '1'"},
		{`{"cost": -}`, "", "offset 10: unexpected '}'"},
		{`{"cost": 1.}`, "", "offset 11: unexpected '}'"},
		{`{"cost": 1e}`, "", "offset 11: unexpected '}'"},
		{`{"cost": 1e+}`, "", "offset 12: unexpected '}'"},
		{`{"cost": }`, "", "offset 9: unexpected '}'"},
		{`{"cost" 1}`, "", "offset 8: unexpected '1'"},
		{`{"cost": 1,}`, "", "offset 11: unexpected '}'"},
		{`{"cost": 1 "attributes": {}}`, "", "offset 11: unexpected '\"'"},
		{`{,}`, "", "offset 1: unexpected ','"},
		{`{'cost': 1}`, "", `offset 1: unexpected '\''`},
		{`{"cost": 1`, "", "offset 10: unexpected end of input"},
		{`{"attributes": {"ip": "a",}}`, "", "offset 26: unexpected '}'"},
		{`{"attributes": {"ip": "a"}`, "", "offset 26: unexpected end of input"},
		{`{"attributes": {"ip": x}}`, "", "offset 22: unexpected 'x'"},
		{`{"attributes": x}`, "", "offset 15: unexpected 'x'"},
		{`{"attributes": {"ip": "a` + "\x01" + `"}}`, "", "offset 24: control character in string"},
		{`{"attributes": {"ip": "a` + "\xff" + `"}}`, "", "offset 24: invalid UTF-8"},
		{`{"attributes": {"ip": "a` + "\xed\xa0\x80" + `"}}`, "", "offset 24: invalid UTF-8"}, // encoded surrogate
		{`{"attributes": {"ip": "\x"}}`, "", "offset 23: invalid escape"},
		{`{"attributes": {"ip": "\u12"}}`, "", `offset 23: invalid \u escape`},
		{`{"attributes": {"ip": "\uZZZZ"}}`, "", `offset 23: invalid \u escape`},
		{`{"attributes": {"ip": "\ud800\uZZZZ"}}`, "", `offset 29: invalid \u escape`},
		{`{"attributes": {"ip": "ab\`, "", "offset 26: unexpected end of input in string"},
		{`{"attributes": {"ip": "ab`, "", "offset 25: unexpected end of input in string"},
		{"{\"attributes\": {\"ip\": \"é\n\"}}", "", "offset 25: control character in string"},
		{"{\"attributes\": {\"ip\": \"\\n\xff\"}}", "", "offset 25: invalid UTF-8"},
		{"{\"attributes\": {\"ip\": \"\\n\x01\"}}", "", "offset 25: control character"},
		{"{\"cost\": 1}\x00", "", "offset 11: unexpected data"},
		{"\x00", "", "offset 0: unexpected byte 0x00"},
	}
	for _, tt := range tests {
		var d Decoder
		req := Request{Attributes: Attrs{{"stale", "x"}}, Cost: 9}
		err := d.DecodeRequest([]byte(tt.body), &req)
		checkFieldError(t, tt.body, err, tt.field, tt.msg)
		if !reflect.DeepEqual(req, Request{}) {
			t.Errorf("DecodeRequest(%q) left %#v behind on error", tt.body, req)
		}
	}
}

// checkFieldError asserts that err is a *FieldError on field whose message contains msg.
func checkFieldError(t *testing.T, body string, err error, field, msg string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("decode(%q) = %v, want a *FieldError on %q", body, err, field)
		return
	}
	if fe.Field != field || !strings.Contains(fe.Msg, msg) {
		t.Errorf("decode(%q) = {Field: %q, Msg: %q}, want {Field: %q, Msg containing %q}", body, fe.Field, fe.Msg, field, msg)
	}
}

func TestDecodeRequestManyAttributes(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"attributes": {`)
	const n = 3 * linearDupLimit
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`"a` + strconv.Itoa(i) + `": "v"`)
	}
	unique := sb.String() + `}}`
	var d Decoder
	var req Request
	if err := d.DecodeRequest([]byte(unique), &req); err != nil || len(req.Attributes) != n {
		t.Fatalf("DecodeRequest of %d unique attributes: %d attributes, err %v", n, len(req.Attributes), err)
	}
	for _, dup := range []int{0, linearDupLimit - 1, linearDupLimit, n - 1} {
		body := sb.String() + `, "a` + strconv.Itoa(dup) + `": "w"}}`
		err := d.DecodeRequest([]byte(body), &req)
		checkFieldError(t, body, err, "attributes.a"+strconv.Itoa(dup), "duplicate attribute")
	}
}

func TestDecodeRequestBounds(t *testing.T) {
	var d Decoder
	var req Request
	for _, body := range [][]byte{attrsBody(MaxAttributes, MaxValueBytes), attrsBody(1, MaxValueBytes)} {
		if err := d.DecodeRequest(body, &req); err != nil {
			t.Fatalf("a request at the bounds is refused: %v", err)
		}
	}
	err := d.DecodeRequest(attrsBody(MaxAttributes+1, 1), &req)
	checkFieldError(t, "65 attributes", err, "attributes", "more than 64 attributes")
	err = d.DecodeRequest(attrsBody(3, MaxValueBytes+1), &req)
	checkFieldError(t, "a 4097-byte value", err, "attributes.a0", "value of 4097 bytes is longer than 4096")
	long := `{"attributes": {"` + strings.Repeat("n", MaxNameBytes+1) + `": "v"}}`
	checkFieldError(t, "a 257-byte name", d.DecodeRequest([]byte(long), &req), "attributes", "attribute name of 257 bytes is longer than 256")
	if err := d.DecodeRequest([]byte(`{"attributes": {"`+strings.Repeat("n", MaxNameBytes)+`": "v"}}`), &req); err != nil {
		t.Fatalf("a 256-byte name is refused: %v", err)
	}
	// Escapes count as what they stand for.
	escaped := `{"attributes": {"k": "` + strings.Repeat(`\u0041`, MaxValueBytes+1) + `"}}`
	checkFieldError(t, "escaped", d.DecodeRequest([]byte(escaped), &req), "attributes.k", "longer than 4096")
	// In a batch the item is named.
	body := `{"requests": [{}, {}, {}, ` + string(attrsBody(1, MaxValueBytes+1)) + `]}`
	_, err = d.DecodeBatch([]byte(body), nil, 10)
	checkFieldError(t, "batch", err, "requests[3].attributes.a0", "longer than 4096")
	body = `{"requests": [{}, ` + string(attrsBody(MaxAttributes+1, 1)) + `]}`
	_, err = d.DecodeBatch([]byte(body), nil, 10)
	checkFieldError(t, "batch", err, "requests[1].attributes", "more than 64 attributes")
}

func TestAttrsValidate(t *testing.T) {
	many := make(Attrs, MaxAttributes+1)
	for i := range many {
		many[i] = Attr{Name: strconv.Itoa(i)}
	}
	cases := []struct {
		attrs      Attrs
		field, msg string
	}{
		{many[:MaxAttributes], "", ""},
		{Attrs{{"k", strings.Repeat("x", MaxValueBytes)}}, "", ""},
		{many, "attributes", "more than 64"},
		{Attrs{{"ip", "a"}, {"k", strings.Repeat("x", MaxValueBytes+1)}}, "attributes.k", "longer than 4096"},
		{Attrs{{"k", "a\xffb"}}, "attributes.k", "valid UTF-8"},
		{Attrs{{strings.Repeat("n", MaxNameBytes+1), "v"}}, "attributes", "attribute name of 257 bytes"},
		// The name is judged before the value, and the first bad attribute wins.
		{Attrs{{strings.Repeat("n", MaxNameBytes+1), "a\xffb"}}, "attributes", "attribute name of 257 bytes"},
		{Attrs{{"a", "ok"}, {"b", "a\xffb"}, {"c", strings.Repeat("x", MaxValueBytes+1)}}, "attributes.b", "valid UTF-8"},
	}
	for _, tc := range cases {
		err := tc.attrs.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%d attributes: %v, want nil", len(tc.attrs), err)
			}
			continue
		}
		checkFieldError(t, tc.field, err, tc.field, tc.msg)
	}
}

func TestDecodeBatch(t *testing.T) {
	var d Decoder
	backing := make([]Request, 0, 4)
	body := `{"requests": [{"attributes": {"ip": "a"}, "cost": 2}, {}, {"attributes": {"ip": "b", "route": "/x"}}]}`
	got, err := d.DecodeBatch([]byte(body), backing, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{{Attributes: Attrs{{"ip", "a"}}, Cost: 2}, {}, {Attributes: Attrs{{"ip", "b"}, {"route", "/x"}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeBatch = %#v, want %#v", got, want)
	}
	if &got[0] != &backing[:1][0] {
		t.Error("DecodeBatch did not reuse the capacity of reqs")
	}
	// Each request's attributes are capped, so appending to one cannot overwrite the next.
	_ = append(got[0].Attributes, Attr{"extra", "x"})
	if got[2].Attributes[0] != (Attr{"ip", "b"}) {
		t.Errorf("appending to requests[0].attributes changed requests[2]: %v", got[2].Attributes)
	}

	got, err = d.DecodeBatch([]byte(`{"requests": []}`), got, 3)
	if err != nil || len(got) != 0 {
		t.Errorf("empty batch = %v, %v; want no requests", got, err)
	}
}

func TestDecodeBatchRejects(t *testing.T) {
	tests := []struct {
		body, field, msg string
	}{
		{`[]`, "", "body must be a JSON object"},
		{`{}`, "requests", "is required"},
		{`{"requests": null}`, "requests", "must be an array"},
		{`{"requests": {}}`, "requests", "must be an array"},
		{`{"requests": [1]}`, "requests[0]", "must be an object"},
		{`{"requests": [{}, null]}`, "requests[1]", "must be an object"},
		{`{"requests": [{}, {"cost": 0}]}`, "requests[1].cost", "must be an integer >= 1"},
		{`{"requests": [{"attributes": {"ip": 5}}]}`, "requests[0].attributes.ip", "must be a string"},
		{`{"requests": [{"attributes": {"": "a"}}]}`, "requests[0].attributes", "must not be empty"},
		{`{"requests": [{"foo": 1}]}`, "requests[0].foo", "unknown field"},
		{`{"requests": [], "requests": []}`, "requests", "duplicate field"},
		{`{"requests": [], "extra": 1}`, "extra", "unknown field"},
		{`{"requests": [{}, {}, {}]}`, "requests", "at most 2 items"},
		{`{"requests": [{},]}`, "", "offset 17: unexpected ']'"},
		{`{"requests": [{} {}]}`, "", "offset 17: unexpected '{'"},
		{`{"requests": [{}]}x`, "", "offset 18: unexpected data after"},
		{`{"requests": [x]}`, "", "offset 14: unexpected 'x'"},
		{`{"requests": x}`, "", "offset 13: unexpected 'x'"},
		{`{"requests": [{"attributes": {"ip": "\q"}}]}`, "", "offset 37: invalid escape"},
	}
	for _, tt := range tests {
		var d Decoder
		reqs, err := d.DecodeBatch([]byte(tt.body), nil, 2)
		checkFieldError(t, tt.body, err, tt.field, tt.msg)
		if len(reqs) != 0 {
			t.Errorf("DecodeBatch(%q) returned %d requests with its error", tt.body, len(reqs))
		}
	}
}

func TestDecodeBatchAtLimit(t *testing.T) {
	var d Decoder
	reqs, err := d.DecodeBatch(batchBody(1000), nil, 1000)
	if err != nil || len(reqs) != 1000 {
		t.Fatalf("batch of 1000 with max 1000: %d requests, err %v", len(reqs), err)
	}
	if ip, _ := reqs[999].Attributes.Get("ip"); ip != "203.0.113."+strconv.Itoa(999%256) {
		t.Errorf("requests[999] ip = %q", ip)
	}
	_, err = d.DecodeBatch(batchBody(1001), reqs, 1000)
	checkFieldError(t, "batch of 1001", err, "requests", "at most 1000 items")
}

func TestDecodeWarmIsAllocationFree(t *testing.T) {
	var d Decoder
	var req Request
	allocs := testing.AllocsPerRun(100, func() {
		if err := d.DecodeRequest(typicalBody, &req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("DecodeRequest: %v allocs/op once warm, want 0", allocs)
	}
	body := batchBody(50)
	var reqs []Request
	allocs = testing.AllocsPerRun(20, func() {
		var err error
		if reqs, err = d.DecodeBatch(body, reqs, 1000); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("DecodeBatch: %v allocs/op once warm, want 0", allocs)
	}
}
