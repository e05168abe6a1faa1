// Command app is the test service deployed by shoal's deploy tests: an HTTP server
// that reports its version, a health-check client for its own image (FROM scratch
// has no curl), and a stand-in for a release task.
//
//	/app                serve on :8000; GET / answers "version=$APP_VERSION"
//	/app -healthcheck   exit 0 when GET http://127.0.0.1:8000/healthz answers 200
//	/app -release NAME  print a line and exit with $RELEASE_EXIT (default 0)
//
// FAIL_HEALTH=1 makes /healthz answer 500, so the container never becomes healthy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	health := flag.Bool("healthcheck", false, "probe the local server and exit")
	release := flag.String("release", "", "run a pretend release task and exit")
	flag.Parse()
	version := os.Getenv("APP_VERSION")

	switch {
	case *health:
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://127.0.0.1:8000/healthz")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintln(os.Stderr, "unhealthy:", resp.Status)
			os.Exit(1)
		}
		return
	case *release != "":
		code, _ := strconv.Atoi(os.Getenv("RELEASE_EXIT"))
		fmt.Printf("release %s: running for version %s\n", *release, version)
		if code != 0 {
			fmt.Fprintf(os.Stderr, "release %s: failed: relation \"shop_order\" already exists\n", *release)
		}
		os.Exit(code)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "version=%s\n", version)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if os.Getenv("FAIL_HEALTH") == "1" {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: ":8000", Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		// Swarm removes a stopping task from the ingress load balancer asynchronously:
		// keep answering for a moment so no request lands on a closed port.
		time.Sleep(drainDelay())
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("serving version %s on :8000\n", version)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func drainDelay() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("DRAIN_DELAY")); err == nil {
		return d
	}
	return 3 * time.Second
}
