package doemu_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/shoalci/shoal/internal/doemu"
)

func TestDropletLifecycleOnVirtualClock(t *testing.T) {
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: 45 * time.Second, Max: 75 * time.Second}})
	key, _, err := f.do.Keys.Create(f.ctx, &godo.KeyCreateRequest{Name: "ci", PublicKey: testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	req := runnerRequest("shoal-docker-a1")
	req.UserData = "#cloud-config\nruncmd: [echo hi]\n"
	req.SSHKeys = []godo.DropletCreateSSHKey{{Fingerprint: key.Fingerprint}}
	req.Monitoring = true
	d, resp, err := f.do.Droplets.Create(f.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "new" || len(d.Networks.V4) != 0 || d.SizeSlug != "s-2vcpu-4gb" || d.Region.Slug != "fra1" {
		t.Fatalf("new droplet = %+v", d)
	}
	if len(resp.Links.Actions) != 1 || resp.Links.Actions[0].Rel != "create" {
		t.Fatalf("links.actions = %+v", resp.Links.Actions)
	}
	act, _, err := f.do.Actions.Get(f.ctx, resp.Links.Actions[0].ID)
	if err != nil || act.Status != "in-progress" || act.Type != "create" || act.ResourceID != d.ID {
		t.Fatalf("create action = %+v, %v", act, err)
	}
	if !strings.HasSuffix(resp.Links.Actions[0].HREF, fmt.Sprintf("/v2/actions/%d", act.ID)) {
		t.Fatalf("action href %s", resp.Links.Actions[0].HREF)
	}

	f.clock.Advance(44 * time.Second)
	if got, _, _ := f.do.Droplets.Get(f.ctx, d.ID); got.Status != "new" {
		t.Fatalf("active after 44s, before the 45s minimum boot delay")
	}
	f.clock.Advance(31 * time.Second)
	got, _, err := f.do.Droplets.Get(f.ctx, d.ID)
	if err != nil || got.Status != "active" {
		t.Fatalf("after 75s: %+v, %v", got, err)
	}
	pub, _ := got.PublicIPv4()
	priv, _ := got.PrivateIPv4()
	if pub == "" || priv == "" || pub == priv {
		t.Fatalf("addresses public %q private %q", pub, priv)
	}
	if act, _, _ = f.do.Actions.Get(f.ctx, act.ID); act.Status != "completed" || act.CompletedAt == nil {
		t.Fatalf("create action after boot = %+v", act)
	}
	if _, err := f.do.Droplets.Delete(f.ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.do.Droplets.Get(f.ctx, d.ID)
	apiError(t, err, http.StatusNotFound, "could not be found")
}

func TestMultiCreateFiltersAndPagination(t *testing.T) {
	f := newFixture(t, doemu.Options{})
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("shoal-docker-%02d", i))
	}
	ds, resp, err := f.do.Droplets.CreateMultiple(f.ctx, &godo.DropletMultiCreateRequest{Names: names, Region: "fra1",
		Size: "s-2vcpu-4gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}, Tags: []string{"shoal", "shoal-pool-docker"}})
	if err != nil || len(ds) != 10 || len(resp.Links.Actions) != 10 {
		t.Fatalf("multi-create: %d droplets, %d actions, %v", len(ds), len(resp.Links.Actions), err)
	}
	_, _, err = f.do.Droplets.CreateMultiple(f.ctx, &godo.DropletMultiCreateRequest{Names: append(names, "eleven"), Region: "fra1",
		Size: "s-2vcpu-4gb", Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}})
	apiError(t, err, http.StatusUnprocessableEntity, "up to 10")
	for i := range 15 {
		req := runnerRequest(fmt.Sprintf("other-%d", i))
		req.Tags = []string{"other"}
		f.create(t, req)
	}

	// Page through the tagged ones the way a client does, following links.
	var seen []string
	opt := &godo.ListOptions{PerPage: 3}
	pages := 0
	for {
		list, resp, err := f.do.Droplets.ListByTag(f.ctx, "shoal-pool-docker", opt)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if resp.Meta.Total != 10 {
			t.Fatalf("meta.total = %d, want 10", resp.Meta.Total)
		}
		for _, d := range list {
			seen = append(seen, d.Name)
		}
		if resp.Links.IsLastPage() {
			break
		}
		if next := resp.Links.Pages.Next; !strings.HasPrefix(next, f.emu.URL+"/v2/droplets?") {
			t.Fatalf("next link %q is not an absolute URL of the emulator", next)
		} else if u, _ := url.Parse(next); u.Query().Get("tag_name") != "shoal-pool-docker" {
			t.Fatalf("next link %q drops the filter", next)
		}
		page, err := resp.Links.CurrentPage()
		if err != nil {
			t.Fatal(err)
		}
		opt.Page = page + 1
	}
	if pages != 4 || strings.Join(seen, ",") != strings.Join(names, ",") {
		t.Fatalf("%d pages, names %v", pages, seen)
	}

	byName, _, err := f.do.Droplets.ListByName(f.ctx, "other-7", nil)
	if err != nil || len(byName) != 1 || byName[0].Name != "other-7" {
		t.Fatalf("by name: %+v, %v", byName, err)
	}
	all, resp, err := f.do.Droplets.List(f.ctx, &godo.ListOptions{PerPage: 500})
	if err != nil || len(all) != 25 || resp.Meta.Total != 25 {
		t.Fatalf("per_page 500 (capped at 200) gave %d of %d, %v", len(all), resp.Meta.Total, err)
	}

	if _, err := f.do.Droplets.DeleteByTag(f.ctx, "shoal-pool-docker"); err != nil {
		t.Fatal(err)
	}
	left, _, _ := f.do.Droplets.List(f.ctx, &godo.ListOptions{PerPage: 200})
	if len(left) != 15 {
		t.Fatalf("%d droplets left after delete by tag, want 15", len(left))
	}
}

func TestDropletCreateValidation(t *testing.T) {
	f := newFixture(t, doemu.Options{DropletLimit: 2})
	tests := []struct {
		name   string
		modify func(*godo.DropletCreateRequest)
		status int
		want   string
	}{
		{"missing name", func(r *godo.DropletCreateRequest) { r.Name = "" }, 422, "Name is required"},
		{"bad name", func(r *godo.DropletCreateRequest) { r.Name = "under_score" }, 422, "hostname"},
		{"unknown region", func(r *godo.DropletCreateRequest) { r.Region = "mars1" }, 422, "region"},
		{"unknown size", func(r *godo.DropletCreateRequest) { r.Size = "s-99vcpu" }, 422, "size"},
		{"unknown image", func(r *godo.DropletCreateRequest) { r.Image.Slug = "windows-95" }, 422, "image"},
		{"user data over 64 KiB", func(r *godo.DropletCreateRequest) { r.UserData = strings.Repeat("x", 64*1024+1) }, 422, "64 KiB"},
		{"bad tag", func(r *godo.DropletCreateRequest) { r.Tags = []string{"has space"} }, 422, "Tag names"},
		{"unknown ssh key", func(r *godo.DropletCreateRequest) { r.SSHKeys = []godo.DropletCreateSSHKey{{ID: 7}} }, 422, "ssh_keys"},
		{"bad vpc", func(r *godo.DropletCreateRequest) { r.VPCUUID = "nope" }, 422, "vpc_uuid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := runnerRequest("valid")
			tc.modify(req)
			_, _, err := f.do.Droplets.Create(f.ctx, req)
			apiError(t, err, tc.status, tc.want)
		})
	}
	f.create(t, runnerRequest("one"))
	f.create(t, runnerRequest("two"))
	_, _, err := f.do.Droplets.Create(f.ctx, runnerRequest("three"))
	apiError(t, err, 422, "droplet limit")
}

func TestDropletActionsOneAtATime(t *testing.T) {
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Minute}, ActionDelay: doemu.Range{Min: 10 * time.Second}})
	d := f.create(t, runnerRequest("worker"))
	_, _, err := f.do.DropletActions.PowerOff(f.ctx, d.ID)
	apiError(t, err, 422, "Droplet already has a pending event") // still being created
	f.clock.Advance(time.Minute)

	off, _, err := f.do.DropletActions.PowerOff(f.ctx, d.ID)
	if err != nil || off.Status != "in-progress" || off.Type != "power_off" {
		t.Fatalf("power_off = %+v, %v", off, err)
	}
	_, _, err = f.do.DropletActions.Reboot(f.ctx, d.ID)
	apiError(t, err, 422, "Droplet already has a pending event")
	f.clock.Advance(10 * time.Second)
	if got, _, _ := f.do.Droplets.Get(f.ctx, d.ID); got.Status != "off" {
		t.Fatalf("status after power_off = %s", got.Status)
	}
	got, _, err := f.do.DropletActions.Get(f.ctx, d.ID, off.ID)
	if err != nil || got.Status != "completed" {
		t.Fatalf("power_off action = %+v, %v", got, err)
	}
	on, _, err := f.do.DropletActions.PowerOn(f.ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Second)
	if got, _, _ := f.do.Droplets.Get(f.ctx, d.ID); got.Status != "active" {
		t.Fatalf("status after power_on = %s", got.Status)
	}
	list, _, err := f.do.Droplets.Actions(f.ctx, d.ID, nil)
	if err != nil || len(list) != 3 || list[2].ID != on.ID {
		t.Fatalf("droplet actions = %+v, %v", list, err)
	}
	all, _, err := f.do.Actions.List(f.ctx, nil)
	if err != nil || len(all) != 3 {
		t.Fatalf("all actions = %d, %v", len(all), err)
	}
	_, _, err = f.do.DropletActions.Get(f.ctx, d.ID, 1)
	apiError(t, err, 404, "could not be found")
	_, _, err = f.do.DropletActions.Shutdown(f.ctx, 1)
	apiError(t, err, 404, "could not be found")
}

// A graceful shutdown lasts as long as the guest takes to stop its services.
func TestShutdownWaitsForTheGuest(t *testing.T) {
	var stopped atomic.Bool
	asked := map[int]int{}
	var mu sync.Mutex
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Minute}, ActionDelay: doemu.Range{Min: 5 * time.Second},
		ShutdownDone: func(id int) bool {
			mu.Lock()
			asked[id]++
			mu.Unlock()
			return stopped.Load()
		}})
	d := f.create(t, runnerRequest("worker"))
	f.clock.Advance(time.Minute)
	sd, _, err := f.do.DropletActions.Shutdown(f.ctx, d.ID)
	if err != nil || sd.Status != "in-progress" {
		t.Fatalf("shutdown = %+v, %v", sd, err)
	}
	f.clock.Advance(time.Hour) // a long job on the guest
	if got, _, _ := f.do.Droplets.Get(f.ctx, d.ID); got.Status != "active" {
		t.Fatalf("status an hour into a shutdown the guest has not finished = %s", got.Status)
	}
	_, _, err = f.do.DropletActions.PowerOff(f.ctx, d.ID)
	apiError(t, err, 422, "Droplet already has a pending event")
	mu.Lock()
	n := asked[d.ID]
	mu.Unlock()
	if n < 2 {
		t.Errorf("the guest was asked %d times in an hour", n)
	}
	stopped.Store(true)
	f.clock.Advance(5 * time.Second)
	if got, _, _ := f.do.Droplets.Get(f.ctx, d.ID); got.Status != "off" {
		t.Fatalf("status once the guest stopped = %s", got.Status)
	}
	if got, _, err := f.do.DropletActions.Get(f.ctx, d.ID, sd.ID); err != nil || got.Status != "completed" {
		t.Fatalf("shutdown action = %+v, %v", got, err)
	}
}

func TestOnDropletHearsTheLifecycle(t *testing.T) {
	var got []string
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Minute}, OnDroplet: func(ev doemu.DropletEvent) {
		got = append(got, fmt.Sprintf("%s %s @%s", ev.Kind, ev.Name, ev.At.Sub(epoch)))
	}})
	d := f.create(t, runnerRequest("hooked"))
	f.clock.Advance(time.Minute)
	if _, err := f.do.Droplets.Delete(f.ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if want := "created hooked @0s,active hooked @1m0s,deleted hooked @1m0s"; strings.Join(got, ",") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
}
