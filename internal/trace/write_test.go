package trace_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoalci/shoal/internal/trace"
)

// A shared trace written and read back is the same trace, byte for byte.
func TestWriteRoundTrips(t *testing.T) {
	want, err := os.ReadFile(traceFile(t, "team-week.csv"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := trace.Parse(bytes.NewReader(want), "team-week")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := trace.Write(&got, tr); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("team-week.csv written back differs from the file")
	}
}

func TestWrite(t *testing.T) {
	job := func(id int64, d time.Duration, tags ...string) trace.Job {
		return trace.Job{ID: id, Duration: d, Tags: tags}
	}
	for _, tc := range []struct {
		name    string
		tr      trace.Trace
		want    string // the rows after the header
		wantErr string
	}{
		{"rounds to tenths, untagged jobs, short jobs last 0.1 s",
			trace.Trace{Pipelines: []trace.Pipeline{{ID: 7, CreatedAt: 7200*time.Second + 49*time.Millisecond, Stages: [][]trace.Job{
				{job(1, 90*time.Second+50*time.Millisecond, "docker"), job(2, 20*time.Millisecond)},
				{job(3, time.Minute, "docker", "large")}}}}},
			"1,7,0,7200.0,90.1,docker\n2,7,0,7200.0,0.1,\n3,7,1,7200.0,60.0,docker;large\n", ""},
		{"pipelines out of order",
			trace.Trace{Pipelines: []trace.Pipeline{
				{ID: 1, CreatedAt: time.Hour, Stages: [][]trace.Job{{job(1, time.Second)}}},
				{ID: 2, CreatedAt: time.Minute, Stages: [][]trace.Job{{job(2, time.Second)}}}}},
			"", "line 3: pipeline 2 (created 60.0 s) after pipeline 1"},
		{"job IDs that do not increase",
			trace.Trace{Pipelines: []trace.Pipeline{{ID: 1, Stages: [][]trace.Job{{job(2, time.Second), job(1, time.Second)}}}}},
			"", "line 3: job_id 1 after 2"},
		{"a tag the format cannot hold",
			trace.Trace{Pipelines: []trace.Pipeline{{ID: 1, Stages: [][]trace.Job{{job(1, time.Second, "a,b")}}}}},
			"", `tag "a,b" cannot be written`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := trace.Write(&b, &tc.tr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if b.Len() != 0 {
					t.Fatalf("wrote %q despite the error", b.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimPrefix(b.String(), trace.Header+"\n"); got != tc.want {
				t.Fatalf("wrote\n%s\nwant\n%s", got, tc.want)
			}
			back, err := trace.Parse(&b, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(back.Pipelines) != 1 || !reflect.DeepEqual(back.Pipelines[0].Stages[1][0].Tags, []string{"docker", "large"}) {
				t.Fatalf("read back %+v", back.Pipelines)
			}
		})
	}
	var pe *trace.ParseError
	err := trace.Write(&bytes.Buffer{}, &trace.Trace{Pipelines: []trace.Pipeline{{ID: 1, CreatedAt: -time.Second, Stages: [][]trace.Job{{job(1, time.Second)}}}}})
	if !errors.As(err, &pe) {
		t.Fatalf("a negative creation time: %v, want a ParseError", err)
	}
}

func TestWeekStart(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	for in, want := range map[time.Time]time.Time{
		time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC):   time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), // a Monday
		time.Date(2026, 11, 29, 23, 59, 0, 0, time.UTC): time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), // the Sunday after
		time.Date(2026, 11, 30, 0, 30, 0, 0, berlin):    time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), // still Sunday in UTC
		time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC):    time.Date(2026, 12, 28, 0, 0, 0, 0, time.UTC), // across a year
	} {
		if got := trace.WeekStart(in); !got.Equal(want) {
			t.Errorf("WeekStart(%v) = %v, want %v", in, got, want)
		}
	}
}
