package pki

import "testing"

// FuzzParseCertificatesPEM feeds arbitrary bytes to the parser behind
// LoadCertPool and LoadKeyPair: it must never panic, and success means at
// least one certificate.
func FuzzParseCertificatesPEM(f *testing.F) {
	ca, err := NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	caPEM := ca.CertPEM()
	f.Add(caPEM)
	f.Add(append(append([]byte("text before\n"), caPEM...), caPEM...))
	f.Add(caPEM[:len(caPEM)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseCertificatesPEM(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		for _, c := range certs {
			if c == nil {
				t.Fatal("nil certificate")
			}
		}
	})
}
