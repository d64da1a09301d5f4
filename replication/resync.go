package replication

import "encoding/json"

// ResyncPrefix is the prefix of the logical message that `replicator
// resync` writes before its copy: in the stream, it marks the position
// from which the daemon must not checkpoint until the copy is complete.
const ResyncPrefix = "replicator_resync"

// ResyncMessage is the content of a resync's logical message.
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
