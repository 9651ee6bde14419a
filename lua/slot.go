package lua

import "strings"

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// KeySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash
// tag (the part inside the first {...}, if not empty) or of the whole key,
// modulo 16384, as the Redis Cluster specification defines it.
func KeySlot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return int(crc16(key)) % clusterSlots
}

// crc16 is CRC-16/XMODEM: polynomial 0x1021, initial value 0.
func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

// crc16Table holds crc16 of every byte value, so crc16 works a byte at a time.
var crc16Table = func() (t [256]uint16) {
	for b := range t {
		crc := uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[b] = crc
	}
	return t
}()
