package doemu_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/doemu"
)

// BenchmarkListDroplets: a page of 200 from 1,000 Droplets; the target is under 5 ms.
func BenchmarkListDroplets(b *testing.B) {
	token := "dop_v1_bench"
	emu, err := doemu.New(doemu.Options{Clock: clock.NewVirtual(epoch), Tokens: []string{token},
		RateLimitPerMinute: -1, RateLimitPerHour: -1, DropletLimit: 1000})
	if err != nil {
		b.Fatal(err)
	}
	for batch := range 100 {
		var names []string
		for i := range 10 {
			names = append(names, fmt.Sprintf("shoal-docker-%d-%d", batch, i))
		}
		body := fmt.Sprintf(`{"names":["%s"],"region":"fra1","size":"s-2vcpu-4gb","image":"ubuntu-24-04-x64","tags":["shoal","shoal-pool-docker"]}`,
			strings.Join(names, `","`))
		req := httptest.NewRequest("POST", "/v2/droplets", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		emu.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("create: %d %s", rec.Code, rec.Body)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest("GET", fmt.Sprintf("/v2/droplets?tag_name=shoal&per_page=200&page=%d", 1+i%5), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		emu.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("list: %d", rec.Code)
		}
	}
}
