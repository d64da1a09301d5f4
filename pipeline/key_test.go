package pipeline

import (
	"encoding/binary"
	"strconv"
)

// idKey is the buffer and lookup key (mapping.Table.IdentString,
// Placement) of a row whose identity, or sorting key, is one integer
// column.
func idKey(id uint64) string { return string(binary.BigEndian.AppendUint64(nil, id)) }

// idKeyOf is idKey of a decimal id.
func idKeyOf(id string) string {
	n, _ := strconv.ParseUint(id, 10, 64)
	return idKey(n)
}
