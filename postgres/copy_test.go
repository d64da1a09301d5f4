package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// copyStream encodes rows in the binary COPY format; a nil field is NULL.
func copyStream(rows [][][]byte, ext []byte) []byte {
	var b bytes.Buffer
	b.Write(copySignature)
	binary.Write(&b, binary.BigEndian, uint32(0))
	binary.Write(&b, binary.BigEndian, uint32(len(ext)))
	b.Write(ext)
	for _, r := range rows {
		binary.Write(&b, binary.BigEndian, int16(len(r)))
		for _, f := range r {
			if f == nil {
				binary.Write(&b, binary.BigEndian, int32(-1))
				continue
			}
			binary.Write(&b, binary.BigEndian, int32(len(f)))
			b.Write(f)
		}
	}
	binary.Write(&b, binary.BigEndian, int16(-1))
	return b.Bytes()
}

func TestCopyParserAnySplit(t *testing.T) {
	rows := [][][]byte{
		{[]byte{0, 0, 0, 1}, []byte("abc"), nil},
		{[]byte{0, 0, 0, 2}, []byte{}, []byte("x")},
		{},
		{nil, nil, []byte("last")},
	}
	stream := copyStream(rows, []byte("ext"))
	for _, size := range []int{1, 2, 3, 5, 7, 16, len(stream)} {
		var got [][][]byte
		p := &copyParser{row: func(fields [][]byte) error {
			r := make([][]byte, len(fields))
			for i, f := range fields {
				if f != nil {
					r[i] = append([]byte{}, f...)
				}
			}
			got = append(got, r)
			return nil
		}}
		for i := 0; i < len(stream); i += size {
			piece := append([]byte{}, stream[i:min(i+size, len(stream))]...)
			if _, err := p.Write(piece); err != nil {
				t.Fatalf("size %d: write: %v", size, err)
			}
		}
		if err := p.finish(); err != nil {
			t.Fatalf("size %d: finish: %v", size, err)
		}
		want := make([][][]byte, len(rows))
		for i, r := range rows {
			want[i] = make([][]byte, len(r))
			for j, f := range r {
				if f != nil {
					want[i][j] = append([]byte{}, f...)
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("size %d: rows = %q, want %q", size, got, want)
		}
	}
}

func TestCopyParserErrors(t *testing.T) {
	stream := copyStream([][][]byte{{[]byte("a")}}, nil)
	p := &copyParser{row: func([][]byte) error { return nil }}
	if _, err := p.Write(stream[:len(stream)-2]); err != nil {
		t.Fatal(err)
	}
	if err := p.finish(); err == nil {
		t.Error("finish without trailer: no error")
	}

	p = &copyParser{row: func([][]byte) error { return nil }}
	if _, err := p.Write([]byte("NOTCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")); err == nil {
		t.Error("bad signature: no error")
	}

	stop := errors.New("stop")
	p = &copyParser{row: func([][]byte) error { return stop }}
	if _, err := p.Write(stream); !errors.Is(err, stop) || !errors.Is(p.err, stop) {
		t.Errorf("row error = %v, kept %v; want %v", err, p.err, stop)
	}
}
