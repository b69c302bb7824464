package dnsmsg

import (
	"encoding/binary"
	"net/netip"
)

// Sinkhole says how AppendAnswer answers a query.
type Sinkhole struct {
	NXDomain bool       // answer NXDOMAIN (no records); A and AAAA are ignored
	A        netip.Addr // answer A queries with this IPv4 address (if valid)
	AAAA     netip.Addr // answer AAAA queries with this IPv6 address (if valid)
	TTL      uint32     // of the answer record
}

// The errors AppendAnswer returns besides Parse's.
var (
	ErrNotQuery      = &Error{"not a standard query with one question"}
	ErrCompressedQry = &Error{"compressed name in a query"}
)

// AppendAnswer appends to b the response a resolver would give to the DNS
// query q under s: the query's id, opcode (0) and RD flag, QR and RA set;
// the question copied byte for byte (a client compares it, some with case);
// then NXDOMAIN, or one A or AAAA record pointing at the question's name
// when the query asks for that type and s has that address, or NOERROR
// with no records (NODATA). Additional records of the query (EDNS) are not
// answered.
func AppendAnswer(b []byte, q []byte, s Sinkhole) ([]byte, error) {
	var m Msg
	if err := m.Parse(q); err != nil {
		return nil, err
	}
	if m.QR || m.Opcode != 0 || m.QDCount != 1 || !m.HasQuestion {
		return nil, ErrNotQuery
	}
	end, err := questionEnd(q)
	if err != nil {
		return nil, err
	}
	var addr netip.Addr
	switch {
	case s.NXDomain:
	case m.QType == 1 && s.A.Is4():
		addr = s.A
	case m.QType == 28 && s.AAAA.Is6():
		addr = s.AAAA
	}
	flags := uint16(0x8080) // QR, RA
	if m.RD {
		flags |= 0x0100
	}
	if s.NXDomain {
		flags |= 3
	}
	var an uint16
	if addr.IsValid() {
		an = 1
	}
	b = binary.BigEndian.AppendUint16(b, m.ID)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, byte(an>>8), byte(an), 0, 0, 0, 0)
	b = append(b, q[headerLen:end]...)
	if addr.IsValid() {
		b = append(b, 0xc0, headerLen) // the question's name
		b = binary.BigEndian.AppendUint16(b, m.QType)
		b = binary.BigEndian.AppendUint16(b, 1) // IN
		b = binary.BigEndian.AppendUint32(b, s.TTL)
		raw := addr.AsSlice()
		b = binary.BigEndian.AppendUint16(b, uint16(len(raw)))
		b = append(b, raw...)
	}
	return b, nil
}

// questionEnd is the offset after the first question of q (parsed), whose
// name must be uncompressed (queries do not compress).
func questionEnd(q []byte) (int, error) {
	off := headerLen
	for off < len(q) {
		n := int(q[off])
		switch {
		case n == 0:
			if off+5 > len(q) {
				return 0, ErrTruncated
			}
			return off + 5, nil
		case n&0xc0 != 0:
			return 0, ErrCompressedQry
		}
		off += 1 + n
	}
	return 0, ErrTruncated
}
