package rules

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestValidateBuiltSets(t *testing.T) {
	second := Duration(time.Second)
	cases := []struct {
		name string
		set  Set
		want []FieldError
	}{
		{"zero set", Set{}, nil},
		{"burst zero means rate", Set{Rules: []Rule{
			{Name: "a", Key: []string{"ip"}, Limit: &Limit{Rate: 1, Per: second}}}}, nil},
		{"every problem at once", Set{Rules: []Rule{
			{Name: "", Key: nil, Limit: &Limit{Rate: 0, Per: 0, Burst: -1}, Match: map[string]string{"route": ""}},
			{Name: "q", Key: []string{"tenant"}, Quota: &Quota{Limit: MaxAmount + 1, Per: "fortnight"}},
			{Name: "q", Key: []string{"x"}, Limit: &Limit{Rate: 1, Per: second, Burst: MaxAmount + 1}},
		}}, []FieldError{
			{"rules[0].name", "must not be empty"},
			{"rules[0].match.route", "must not be empty"},
			{"rules[0].limit.rate", "must be > 0"},
			{"rules[0].limit.per", "must be > 0"},
			{"rules[0].limit.burst", "must be >= 0"},
			{"rules[1].quota.limit", "must be <= 9007199254740991"},
			{"rules[1].quota.per", "must be one of hour, day, week, month"},
			{"rules[2].name", `duplicate name "q" (also rules[1])`},
			{"rules[2].limit.burst", "must be <= 9007199254740991"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.set.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate = %v, want *ValidationError", err)
			}
			if !reflect.DeepEqual(verr.Errors, tc.want) {
				t.Errorf("problems:\n got %q\nwant %q", verr.Errors, tc.want)
			}
		})
	}
}
