package doemu

import (
	"fmt"
	"net/http"
	"time"
)

const accountUUID = "b6fr89dbf6d9156cace5f3c78dc9851d957381ef"

func (s *Server) getAccount(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"account": map[string]any{
		"droplet_limit":     s.opts.DropletLimit,
		"floating_ip_limit": 3,
		"reserved_ip_limit": 3,
		"volume_limit":      s.opts.VolumeLimit,
		"email":             "emulator@shoal.invalid",
		"name":              "shoal emulator",
		"uuid":              accountUUID,
		"email_verified":    true,
		"status":            "active",
		"status_message":    "",
		"team":              map[string]string{"uuid": "5df3e3004a17d2a4c4a0a6dd0b2f8fa7a1c1c8a1", "name": "shoal"},
	}})
}

// getBalance reports month_to_date_usage from the billing ledger; amounts are
// strings of dollars, as DigitalOcean sends them.
func (s *Server) getBalance(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	now := s.clock.Now()
	from := monthStart(now)
	var usage float64
	for _, c := range s.ledger.charges {
		usage += cost(s.ledger.model, c, from, now)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{
		"month_to_date_balance": fmt.Sprintf("%.2f", usage),
		"account_balance":       "0.00",
		"month_to_date_usage":   fmt.Sprintf("%.2f", usage),
		"generated_at":          now.UTC().Format(time.RFC3339),
	})
}
