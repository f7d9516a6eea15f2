package telemetry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// On-disk formats. A sealed batch file is
//
//	"TKUB" | version (1) | CRC-32C of the body (4, little endian) | body
//
// where the body is the UsageBatch protobuf (batch_seq and events; the
// dropped counter is filled in when it is sent). The open segment is a
// sequence of records, each
//
//	length of the body (4, little endian) | CRC-32C of the body (4) | body
//
// with a UsageEvent protobuf as the body, appended and fsynced one by one.
// A record cut short by a crash is the segment's end.
const (
	batchMagic     = "TKUB"
	batchVersion   = 1
	batchHeaderLen = len(batchMagic) + 1 + 4
	recordHeader   = 8
	// maxRecordLen bounds one event record; events are far smaller (the
	// recorder truncates their strings).
	maxRecordLen = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a file that is not what the buffer wrote.
var errCorrupt = errors.New("corrupt usage buffer file")

func encodeBatch(b *agentv1.UsageBatch) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding usage batch: %w", err)
	}
	out := make([]byte, batchHeaderLen, batchHeaderLen+len(body))
	copy(out, batchMagic)
	out[len(batchMagic)] = batchVersion
	binary.LittleEndian.PutUint32(out[len(batchMagic)+1:], crc32.Checksum(body, castagnoli))
	return append(out, body...), nil
}

// decodeBatch reads a sealed batch file. Anything but an intact file of
// this version is errCorrupt.
func decodeBatch(data []byte) (*agentv1.UsageBatch, error) {
	if len(data) < batchHeaderLen || string(data[:len(batchMagic)]) != batchMagic {
		return nil, fmt.Errorf("%w: no batch header", errCorrupt)
	}
	if v := data[len(batchMagic)]; v != batchVersion {
		return nil, fmt.Errorf("%w: batch format version %d, want %d", errCorrupt, v, batchVersion)
	}
	body := data[batchHeaderLen:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[len(batchMagic)+1:]) {
		return nil, fmt.Errorf("%w: batch checksum mismatch", errCorrupt)
	}
	var b agentv1.UsageBatch
	if err := proto.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return &b, nil
}

func encodeRecord(ev *agentv1.UsageEvent) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encoding usage event: %w", err)
	}
	if len(body) > maxRecordLen {
		return nil, fmt.Errorf("usage event of %d bytes is over the %d-byte limit", len(body), maxRecordLen)
	}
	out := make([]byte, recordHeader, recordHeader+len(body))
	binary.LittleEndian.PutUint32(out, uint32(len(body)))
	binary.LittleEndian.PutUint32(out[4:], crc32.Checksum(body, castagnoli))
	return append(out, body...), nil
}

// decodeRecords reads an open segment: the events of its intact records
// and the length of the intact prefix. A torn or corrupt record ends it.
func decodeRecords(data []byte) (events []*agentv1.UsageEvent, good int) {
	for len(data)-good >= recordHeader {
		rec := data[good:]
		n := int(binary.LittleEndian.Uint32(rec))
		if n > maxRecordLen || len(rec)-recordHeader < n {
			break
		}
		body := rec[recordHeader : recordHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(rec[4:]) {
			break
		}
		var ev agentv1.UsageEvent
		if err := proto.Unmarshal(body, &ev); err != nil {
			break
		}
		events = append(events, &ev)
		good += recordHeader + n
	}
	return events, good
}
