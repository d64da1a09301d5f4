package replication

import (
	"encoding/json"

	"github.com/jackc/pglogrepl"

	"github.com/replicator/replicator/mapping"
	"github.com/replicator/replicator/postgres"
)

// ResyncPrefix is the prefix of the logical message that `replicator
// resync` writes before its copy: in the stream, it marks the position
// from which the daemon must not checkpoint until the copy is complete.
const ResyncPrefix = "replicator_resync"

// ResyncMessage is the content of a resync's logical message, or of its
// row in postgres.MarkTable.
type ResyncMessage struct {
	Slot  string `json:"slot"`
	Table string `json:"table"`
}

// Encode returns the message's content.
func (m ResyncMessage) Encode() string {
	b, _ := json.Marshal(m) // two strings always encode
	return string(b)
}

// ParseResync returns the resync a logical message announces; false when
// it is another message.
func ParseResync(m *LogicalMessage) (ResyncMessage, bool) {
	var msg ResyncMessage
	if m.Prefix != ResyncPrefix || json.Unmarshal(m.Content, &msg) != nil || msg.Table == "" {
		return ResyncMessage{}, false
	}
	return msg, true
}

// ParseMark returns the resync that a change of postgres.MarkTable
// announces: the way `replicator resync` marks the stream on servers
// whose pgoutput sends no logical messages (before
// postgres.MessagesVersion). The row's insert or update is sent with its
// transaction, so the mark's position is that transaction's commit LSN.
// False when c is no such change.
func ParseMark(c *Change) (ResyncMessage, bool) {
	if c.Op == OpDelete || c.Relation == nil || c.Relation.QualifiedName() != postgres.MarkTable {
		return ResyncMessage{}, false
	}
	var msg ResyncMessage
	for i, col := range c.Relation.Columns {
		if i >= len(c.New) || c.New[i].Kind != mapping.ValueText {
			continue
		}
		switch col.Name {
		case postgres.MarkSlotColumn:
			msg.Slot = string(c.New[i].Data)
		case postgres.MarkTableColumn:
			msg.Table = string(c.New[i].Data)
		}
	}
	if msg.Table == "" {
		return ResyncMessage{}, false
	}
	return msg, true
}

// MarkMessage returns the resync a mark row announces as the logical
// message a newer server would have sent at the mark's commit LSN.
func MarkMessage(m ResyncMessage, commit pglogrepl.LSN) *LogicalMessage {
	return &LogicalMessage{Transactional: true, LSN: commit, Prefix: ResyncPrefix, Content: []byte(m.Encode())}
}
