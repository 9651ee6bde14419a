package lua

import "testing"

// The check value of CRC-16/XMODEM and the examples of the Redis Cluster specification.
func TestKeySlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31c3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]int{
		"123456789":            12739,
		"{user1000}.following": KeySlot("user1000"),
		"foo{}{bar}":           KeySlot("foo{}{bar}"),
		"foo{{bar}}zap":        KeySlot("{bar"),
		"foo{bar}{zap}":        KeySlot("bar"),
	} {
		if got := KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
}
