package keys

import "context"

// PlainKeyMaterial returns, for tests only, the unwrapped data key id and
// the unwrapped KEK versions that are not retired, so that tests can check
// that none of them is ever written to the database.
func (m *Manager) PlainKeyMaterial(ctx context.Context, id string) (dek []byte, keks [][]byte, err error) {
	rec, err := m.store.DataKey(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	kek, err := m.kek(ctx, rec.KEKVersion)
	if err != nil {
		return nil, nil, err
	}
	if dek, err = open(kek, rec.Wrapped, dekAAD(id, rec.KEKVersion)); err != nil {
		return nil, nil, err
	}
	recs, err := m.store.KEKs(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range recs {
		if r.Wrapped != nil {
			k, err := open(m.wrap, r.Wrapped, kekAAD(r.Version))
			if err != nil {
				return nil, nil, err
			}
			keks = append(keks, k)
		}
	}
	return dek, keks, nil
}
