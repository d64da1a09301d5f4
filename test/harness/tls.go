package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// TLSFiles are PEM files made by openssl for servers started with TLS: a
// CA, a certificate for 127.0.0.1 and localhost signed by it, a client
// certificate signed by it, and another CA that signed neither.
type TLSFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// OtherCA signed nothing the servers present.
	OtherCA string
}

// MakeTLS creates the files under dir with openssl.
func MakeTLS(dir string) (*TLSFiles, error) {
	f := &TLSFiles{
		CA: filepath.Join(dir, "ca.pem"), ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client.key"), OtherCA: filepath.Join(dir, "other-ca.pem"),
	}
	caKey, otherKey := filepath.Join(dir, "ca.key"), filepath.Join(dir, "other-ca.key")
	ext := filepath.Join(dir, "server.ext")
	if err := os.WriteFile(ext, []byte("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n"), 0o644); err != nil {
		return nil, err
	}
	clientExt := filepath.Join(dir, "client.ext")
	if err := os.WriteFile(clientExt, []byte("extendedKeyUsage = clientAuth\n"), 0o644); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=replicator test CA", "-keyout", caKey, "-out", f.CA},
		{"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=another CA", "-keyout", otherKey, "-out", f.OtherCA},
		{"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", f.ServerKey, "-out", f.ServerCert + ".csr"},
		{"x509", "-req", "-in", f.ServerCert + ".csr", "-CA", f.CA, "-CAkey", caKey, "-CAcreateserial", "-days", "2",
			"-extfile", ext, "-out", f.ServerCert},
		{"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=replicator", "-keyout", f.ClientKey, "-out", f.ClientCert + ".csr"},
		{"x509", "-req", "-in", f.ClientCert + ".csr", "-CA", f.CA, "-CAkey", caKey, "-CAcreateserial", "-days", "2",
			"-extfile", clientExt, "-out", f.ClientCert},
	}
	for _, args := range steps {
		cmd := exec.Command("openssl", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("openssl %s: %v\n%s (apt-get install -y openssl)", args[0], err, out.String())
		}
	}
	for _, key := range []string{caKey, otherKey, f.ServerKey, f.ClientKey} {
		if err := os.Chmod(key, 0o600); err != nil {
			return nil, err
		}
	}
	return f, nil
}
