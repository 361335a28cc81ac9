package hetero

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
)

// maskKey expands the hosts' shared 256-bit mask seed into the score masks
// and the zero-sum masks. The seed comes from crypto/rand (host 0 draws it
// and, with several hosts, seals it to each other host); every host can
// recompute every host's masks, which is what lets a host remove the total
// mask Σ_h m_h from its gradient. Expansion is AES-256-CTR under a key
// derived with HKDF-SHA256 for each (purpose, epoch, batch, host), so each
// mask element is fresh keystream.
type maskKey struct {
	seed    [32]byte
	session string
}

func (k maskKey) stream(purpose string, epoch, batch, host int) (cipher.Stream, error) {
	info := make([]byte, 0, len(purpose)+13)
	info = append(info, purpose...)
	info = append(info, 0)
	info = binary.BigEndian.AppendUint32(info, uint32(epoch))
	info = binary.BigEndian.AppendUint32(info, uint32(batch))
	info = binary.BigEndian.AppendUint32(info, uint32(host))
	km, err := hkdf.Key(sha256.New, k.seed[:], []byte(k.session), string(info), 48)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(km[:32])
	if err != nil {
		return nil, err
	}
	return cipher.NewCTR(blk, km[32:]), nil
}

// scoreMasks returns n masks uniform on [0, 2^bits) (bits ≤ 127) for host
// h's scores in (epoch, batch).
func (k maskKey) scoreMasks(epoch, batch, host, n, bits int) ([]i128, error) {
	s, err := k.stream("fedrisk-hetero score mask v1", epoch, batch, host)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 16*n)
	s.XORKeyStream(buf, buf)
	out := make([]i128, n)
	for i := range out {
		v := getI128(buf[16*i:])
		if bits < 64 {
			v.hi = 0
			v.lo &= 1<<uint(bits) - 1
		} else {
			v.hi &= 1<<uint(bits-64) - 1
		}
		out[i] = v
	}
	return out, nil
}

// totalMasks returns Σ_h m_h for all hosts.
func (k maskKey) totalMasks(epoch, batch, hosts, n, bits int) ([]i128, error) {
	var tot []i128
	for h := 0; h < hosts; h++ {
		m, err := k.scoreMasks(epoch, batch, h, n, bits)
		if err != nil {
			return nil, err
		}
		if tot == nil {
			tot = m
			continue
		}
		for i := range tot {
			tot[i] = tot[i].add(m[i])
		}
	}
	return tot, nil
}

// zeroSumMasks returns host h's masks for evaluation scores: uniform
// modulo 2^128 for every host but the last, whose masks make the sum over
// hosts zero modulo 2^128. With one host they are zero.
func (k maskKey) zeroSumMasks(epoch, set, host, hosts, n int) ([]i128, error) {
	draw := func(h int) ([]i128, error) {
		s, err := k.stream("fedrisk-hetero eval mask v1", epoch, set, h)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, 16*n)
		s.XORKeyStream(buf, buf)
		out := make([]i128, n)
		for i := range out {
			out[i] = getI128(buf[16*i:])
		}
		return out, nil
	}
	if host < hosts-1 {
		return draw(host)
	}
	out := make([]i128, n)
	for h := 0; h < hosts-1; h++ {
		m, err := draw(h)
		if err != nil {
			return nil, err
		}
		for i := range out {
			out[i] = out[i].sub(m[i])
		}
	}
	return out, nil
}

// Seed sharing between hosts, through the guest. Each host has an X25519
// key for the session; host 0 seals the mask seed to host k under
// HKDF(ECDH(host 0, host k)) with AES-256-GCM. The guest relays the sealed
// seeds and cannot open them.
const sealedSeedBytes = 12 + 32 + 16

func seedAEAD(priv *ecdh.PrivateKey, peer []byte, session string, target int) (cipher.AEAD, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: host key: %v", ErrMalformed, err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: host key: %v", ErrMalformed, err)
	}
	key, err := hkdf.Key(sha256.New, shared, []byte(session), fmt.Sprintf("fedrisk-hetero seed v1 %d", target), 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func sealSeed(priv *ecdh.PrivateKey, peer []byte, session string, target int, seed [32]byte) ([]byte, error) {
	aead, err := seedAEAD(priv, peer, session, target)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 12, sealedSeedBytes)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, seed[:], []byte(session)), nil
}

func openSeed(priv *ecdh.PrivateKey, peer []byte, session string, target int, sealed []byte) ([32]byte, error) {
	var seed [32]byte
	if len(sealed) != sealedSeedBytes {
		return seed, fmt.Errorf("%w: sealed seed of %d bytes", ErrMalformed, len(sealed))
	}
	aead, err := seedAEAD(priv, peer, session, target)
	if err != nil {
		return seed, err
	}
	out, err := aead.Open(nil, sealed[:12], sealed[12:], []byte(session))
	if err != nil {
		return seed, fmt.Errorf("%w: sealed seed does not open", ErrMalformed)
	}
	copy(seed[:], out)
	return seed, nil
}

// randomBig returns a uniform integer in [−2^bits, 2^bits] from crypto/rand.
func randomBig(bits int) (*big.Int, error) {
	lim := new(big.Int).Lsh(big.NewInt(1), uint(bits+1))
	lim.Add(lim, big.NewInt(1))
	v, err := rand.Int(rand.Reader, lim)
	if err != nil {
		return nil, err
	}
	return v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(bits))), nil
}
