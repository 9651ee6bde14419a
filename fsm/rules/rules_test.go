package rules

import (
	"testing"
	"time"
)

func TestPeriodWindow(t *testing.T) {
	at := time.Date(2024, time.February, 29, 13, 45, 10, 5, time.FixedZone("CEST", 2*3600)) // 11:45 UTC, a Thursday
	utc := func(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }
	cases := []struct {
		period     Period
		start, end time.Time
	}{
		{Hour, utc(2024, time.February, 29, 11), utc(2024, time.February, 29, 12)},
		{Day, utc(2024, time.February, 29, 0), utc(2024, time.March, 1, 0)},
		{Week, utc(2024, time.February, 26, 0), utc(2024, time.March, 4, 0)},
		{Month, utc(2024, time.February, 1, 0), utc(2024, time.March, 1, 0)},
	}
	for _, tc := range cases {
		start, end := tc.period.Window(at)
		if !start.Equal(tc.start) || !end.Equal(tc.end) {
			t.Errorf("%s window = [%v, %v), want [%v, %v)", tc.period, start, end, tc.start, tc.end)
		}
	}
	// A Sunday belongs to the week that started the Monday before.
	if start, _ := Week.Window(utc(2024, time.March, 3, 23)); !start.Equal(utc(2024, time.February, 26, 0)) {
		t.Errorf("Sunday's week starts %v", start)
	}
}

func TestPeriodValid(t *testing.T) {
	for _, p := range []Period{Hour, Day, Week, Month} {
		if !p.Valid() {
			t.Errorf("%q not valid", p)
		}
	}
	for _, p := range []Period{"", "year", "Day"} {
		if p.Valid() {
			t.Errorf("%q valid", p)
		}
	}
}
