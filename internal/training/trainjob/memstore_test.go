package trainjob_test

import (
	"testing"

	"github.com/fedrisk/fedrisk/internal/training/trainjob"
	"github.com/fedrisk/fedrisk/internal/training/trainjob/trainjobtest"
)

func TestMemStoreConformance(t *testing.T) {
	trainjobtest.Run(t, func(*testing.T) trainjob.Store { return trainjob.NewMemStore() })
}
