package doemu_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/crypto/ssh"

	"github.com/shoalci/shoal/internal/clock"
	"github.com/shoalci/shoal/internal/doemu"
	"github.com/shoalci/shoal/internal/doemu/doemutest"
)

var epoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// fixture is an emulator on a virtual clock with a godo client.
type fixture struct {
	emu   *doemutest.Server
	clock *clock.Virtual
	do    *godo.Client
	ctx   context.Context
}

func newFixture(t *testing.T, opts doemu.Options) *fixture {
	t.Helper()
	vc := clock.NewVirtual(epoch)
	opts.Clock = vc
	emu := doemutest.New(t, opts)
	return &fixture{emu: emu, clock: vc, do: emu.Godo(t), ctx: context.Background()}
}

// apiError asserts err is a DigitalOcean error response with status and a message containing want.
func apiError(t *testing.T, err error, status int, want string) {
	t.Helper()
	var er *godo.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("got error %v, want a %d error response", err, status)
	}
	if er.Response.StatusCode != status || !strings.Contains(er.Message, want) {
		t.Fatalf("got %d %q, want %d containing %q", er.Response.StatusCode, er.Message, status, want)
	}
	if er.RequestID == "" {
		t.Fatalf("error response without request_id: %+v", er)
	}
}

func testKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " test@shoal"
}

func (f *fixture) create(t *testing.T, req *godo.DropletCreateRequest) *godo.Droplet {
	t.Helper()
	d, _, err := f.do.Droplets.Create(f.ctx, req)
	if err != nil {
		t.Fatalf("create droplet: %v", err)
	}
	return d
}

func runnerRequest(name string) *godo.DropletCreateRequest {
	return &godo.DropletCreateRequest{Name: name, Region: "fra1", Size: "s-2vcpu-4gb",
		Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}, Tags: []string{"shoal", "shoal-pool-docker"}}
}

func TestCatalogThroughGodo(t *testing.T) {
	f := newFixture(t, doemu.Options{DropletLimit: 42})
	acct, _, err := f.do.Account.Get(f.ctx)
	if err != nil || acct.DropletLimit != 42 || acct.Status != "active" {
		t.Fatalf("account = %+v, %v", acct, err)
	}
	regions, _, err := f.do.Regions.List(f.ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	var slugs []string
	for _, r := range regions {
		slugs = append(slugs, r.Slug)
	}
	if got := strings.Join(slugs, " "); got != "nyc1 nyc3 sfo3 ams3 fra1 lon1 sgp1 tor1 blr1 syd1" {
		t.Fatalf("regions = %s", got)
	}
	sizes, _, err := f.do.Sizes.List(f.ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sizes {
		if s.Slug == "s-2vcpu-4gb" {
			found = s.PriceHourly == 0.03571 && s.PriceMonthly == 24 && s.Vcpus == 2 && s.Memory == 4096
		}
	}
	if !found {
		t.Fatalf("s-2vcpu-4gb missing or mispriced in %+v", sizes)
	}
	images, _, err := f.do.Images.ListDistribution(f.ctx, &godo.ListOptions{PerPage: 200})
	if err != nil || len(images) == 0 {
		t.Fatalf("distribution images: %v, %v", images, err)
	}
	id := f.emu.AddSnapshot("runner-base")
	snaps, _, err := f.do.Images.ListUser(f.ctx, nil)
	if err != nil || len(snaps) != 1 || snaps[0].ID != id || snaps[0].Type != "snapshot" {
		t.Fatalf("user images = %+v, %v", snaps, err)
	}
	req := runnerRequest("from-snapshot")
	req.Image = godo.DropletCreateImage{ID: id}
	if d := f.create(t, req); d.Image.ID != id {
		t.Fatalf("droplet image %d, want snapshot %d", d.Image.ID, id)
	}
}

func TestAuthAndUnknownPaths(t *testing.T) {
	f := newFixture(t, doemu.Options{})
	wrong := doemutest.GodoClient(t, f.emu.URL, "dop_v1_wrong")
	_, _, err := wrong.Account.Get(f.ctx)
	apiError(t, err, http.StatusUnauthorized, "Unable to authenticate")

	for _, tc := range []struct{ method, path, auth string }{
		{"GET", "/v2/account", ""},
		{"GET", "/v2/account", "Basic abc"},
		{"GET", "/v2/no-such-thing", "Bearer " + doemutest.Token},
		{"PATCH", "/v2/droplets", "Bearer " + doemutest.Token},
	} {
		req, _ := http.NewRequest(tc.method, f.emu.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusNotFound
		if !strings.HasPrefix(tc.auth, "Bearer") {
			want = http.StatusUnauthorized
		}
		if resp.StatusCode != want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s with %q: %d %s, want %d JSON", tc.method, tc.path, tc.auth, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
	}
	_, _, err = f.do.Droplets.Get(f.ctx, 12345)
	apiError(t, err, http.StatusNotFound, "could not be found")
}
