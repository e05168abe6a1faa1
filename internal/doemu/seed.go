package doemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Seed is the content of a --seed-file: what the emulated account starts with.
type Seed struct {
	Databases []DatabaseSeed `json:"databases"`
}

// LoadSeed reads a seed file strictly: unknown keys are errors, so a typo is not
// silently ignored.
func LoadSeed(path string) (Seed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Seed{}, fmt.Errorf("read seed file: %w", err)
	}
	var seed Seed
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&seed); err != nil {
		return Seed{}, fmt.Errorf("seed file %s: %w", path, err)
	}
	return seed, nil
}
