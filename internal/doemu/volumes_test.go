package doemu_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/shoalci/shoal/internal/doemu"
)

func TestVolumesAttachDetachAndRules(t *testing.T) {
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Second}, ActionDelay: doemu.Range{Min: 3 * time.Second}})
	a := f.create(t, runnerRequest("a"))
	b := f.create(t, runnerRequest("b"))
	far := runnerRequest("far")
	far.Region = "nyc3"
	c := f.create(t, far)
	f.clock.Advance(time.Second)

	vol, _, err := f.do.Storage.CreateVolume(f.ctx, &godo.VolumeCreateRequest{Name: "pgdata", Region: "fra1",
		SizeGigaBytes: 10, FilesystemType: "ext4", FilesystemLabel: "pgdata", Tags: []string{"shoal"}})
	if err != nil || vol.SizeGigaBytes != 10 || vol.FilesystemType != "ext4" || len(vol.DropletIDs) != 0 {
		t.Fatalf("create volume = %+v, %v", vol, err)
	}
	for _, tc := range []struct {
		req    godo.VolumeCreateRequest
		status int
		want   string
	}{
		{godo.VolumeCreateRequest{Name: "pgdata", Region: "fra1", SizeGigaBytes: 1}, 409, "already exists"},
		{godo.VolumeCreateRequest{Name: "PgData", Region: "fra1", SizeGigaBytes: 1}, 422, "lowercase"},
		{godo.VolumeCreateRequest{Name: "x", Region: "fra1", SizeGigaBytes: 0}, 422, "size_gigabytes"},
		{godo.VolumeCreateRequest{Name: "x", Region: "fra1", SizeGigaBytes: 1, FilesystemType: "zfs"}, 422, "filesystem_type"},
		{godo.VolumeCreateRequest{Name: "x", Region: "nowhere", SizeGigaBytes: 1}, 422, "region"},
	} {
		_, _, err := f.do.Storage.CreateVolume(f.ctx, &tc.req)
		apiError(t, err, tc.status, tc.want)
	}
	same, _, err := f.do.Storage.CreateVolume(f.ctx, &godo.VolumeCreateRequest{Name: "pgdata", Region: "nyc3", SizeGigaBytes: 5})
	if err != nil {
		t.Fatalf("same name in another region: %v", err)
	}
	list, _, err := f.do.Storage.ListVolumes(f.ctx, &godo.ListVolumeParams{Name: "pgdata", Region: "fra1"})
	if err != nil || len(list) != 1 || list[0].ID != vol.ID {
		t.Fatalf("list by name and region = %+v, %v", list, err)
	}

	_, _, err = f.do.StorageActions.Attach(f.ctx, vol.ID, c.ID)
	apiError(t, err, 422, "same region")
	att, _, err := f.do.StorageActions.Attach(f.ctx, vol.ID, a.ID)
	if err != nil || att.Status != "in-progress" || att.Type != "attach" {
		t.Fatalf("attach = %+v, %v", att, err)
	}
	_, _, err = f.do.StorageActions.Attach(f.ctx, same.ID, c.ID) // different droplet: fine meanwhile
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(3 * time.Second)
	got, _, _ := f.do.Storage.GetVolume(f.ctx, vol.ID)
	if len(got.DropletIDs) != 1 || got.DropletIDs[0] != a.ID {
		t.Fatalf("droplet_ids after attach = %v", got.DropletIDs)
	}
	if d, _, _ := f.do.Droplets.Get(f.ctx, a.ID); len(d.VolumeIDs) != 1 || d.VolumeIDs[0] != vol.ID {
		t.Fatalf("droplet volume_ids = %v", d.VolumeIDs)
	}
	_, _, err = f.do.StorageActions.Attach(f.ctx, vol.ID, b.ID)
	apiError(t, err, 422, "already attached")
	_, _, err = f.do.StorageActions.DetachByDropletID(f.ctx, vol.ID, b.ID)
	apiError(t, err, 422, "Attachment not found")
	_, err = f.do.Storage.DeleteVolume(f.ctx, vol.ID)
	apiError(t, err, 409, "attached volume can not be deleted")

	det, _, err := f.do.StorageActions.DetachByDropletID(f.ctx, vol.ID, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(3 * time.Second)
	if got, _, _ := f.do.StorageActions.Get(f.ctx, vol.ID, det.ID); got.Status != "completed" {
		t.Fatalf("detach action = %+v", got)
	}
	if got, _, _ := f.do.Storage.GetVolume(f.ctx, vol.ID); len(got.DropletIDs) != 0 {
		t.Fatalf("droplet_ids after detach = %v", got.DropletIDs)
	}

	_, _, err = f.do.StorageActions.Resize(f.ctx, vol.ID, 5, "fra1")
	apiError(t, err, 422, "larger")
	if _, _, err := f.do.StorageActions.Resize(f.ctx, vol.ID, 20, "fra1"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(3 * time.Second)
	if got, _, _ := f.do.Storage.GetVolume(f.ctx, vol.ID); got.SizeGigaBytes != 20 {
		t.Fatalf("size after resize = %d", got.SizeGigaBytes)
	}
	acts, _, err := f.do.StorageActions.List(f.ctx, vol.ID, nil)
	if err != nil || len(acts) != 3 {
		t.Fatalf("volume actions = %d, %v", len(acts), err)
	}

	// Destroying a Droplet frees its volumes.
	if _, err := f.do.Droplets.Delete(f.ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := f.do.Storage.GetVolume(f.ctx, same.ID); len(got.DropletIDs) != 0 {
		t.Fatalf("volume still attached to a deleted droplet: %v", got.DropletIDs)
	}
	if _, err := f.do.Storage.DeleteVolume(f.ctx, vol.ID); err != nil {
		t.Fatal(err)
	}
}

func TestVolumeActionsByNameAndDropletLimit(t *testing.T) {
	f := newFixture(t, doemu.Options{BootDelay: doemu.Range{Min: time.Second}, ActionDelay: doemu.Range{Min: time.Second}})
	d := f.create(t, runnerRequest("db"))
	f.clock.Advance(time.Second)
	for i := range 16 {
		name := fmt.Sprintf("vol-%02d", i)
		if _, _, err := f.do.Storage.CreateVolume(f.ctx, &godo.VolumeCreateRequest{Name: name, Region: "fra1", SizeGigaBytes: 1}); err != nil {
			t.Fatal(err)
		}
		_, _, err := f.volumeActionByName("attach", name, "fra1", d.ID)
		if i < 15 {
			if err != nil {
				t.Fatalf("attach %s: %v", name, err)
			}
			_, _, err = f.volumeActionByName("attach", name, "fra1", d.ID)
			apiError(t, err, 422, "pending event") // one action at a time per Droplet
			f.clock.Advance(time.Second)
		} else {
			apiError(t, err, 422, "at most 15")
		}
	}
	_, _, err := f.volumeActionByName("attach", "missing", "fra1", d.ID)
	apiError(t, err, 404, "could not be found")
	if _, _, err := f.volumeActionByName("detach", "vol-00", "fra1", d.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	req, _ := f.do.NewRequest(f.ctx, "DELETE", "v2/volumes?name=vol-00&region=fra1", nil)
	if _, err := f.do.Do(f.ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	left, resp, _ := f.do.Storage.ListVolumes(f.ctx, &godo.ListVolumeParams{Region: "fra1", ListOptions: &godo.ListOptions{PerPage: 200}})
	if len(left) != 15 || resp.Meta.Total != 15 {
		t.Fatalf("%d volumes left, want 15", len(left))
	}
}

// volumeActionByName posts to /v2/volumes/actions, which godo has no method for,
// through godo's own request machinery.
func (f *fixture) volumeActionByName(typ, name, region string, dropletID int) (*godo.Action, *godo.Response, error) {
	body := map[string]any{"type": typ, "volume_name": name, "region": region, "droplet_id": dropletID}
	req, err := f.do.NewRequest(f.ctx, "POST", "v2/volumes/actions", body)
	if err != nil {
		return nil, nil, err
	}
	var root struct{ Action *godo.Action }
	resp, err := f.do.Do(f.ctx, req, &root)
	return root.Action, resp, err
}
