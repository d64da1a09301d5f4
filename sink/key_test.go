package sink

import "encoding/binary"

// idKey is the buffer and lookup key (mapping.Table.IdentString,
// Placement) of a row whose identity, or sorting key, is one integer
// column.
func idKey(id uint64) string { return string(binary.BigEndian.AppendUint64(nil, id)) }
