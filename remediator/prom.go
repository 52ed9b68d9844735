package remediator

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// promQuery returns a function that evaluates an instant PromQL query and
// reads one number from it: the only sample of a vector, or a scalar.
func promQuery(url string) func(ctx context.Context, q string) (float64, error) {
	client, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return func(context.Context, string) (float64, error) {
			return 0, fmt.Errorf("prometheus client for %s: %w", url, err)
		}
	}
	papi := promv1.NewAPI(client)
	return func(ctx context.Context, q string) (float64, error) {
		v, _, _, err := papi.Query(ctx, q, time.Now())
		if err != nil {
			return 0, fmt.Errorf("query prometheus %s: %w", url, err)
		}
		switch v := v.(type) {
		case *model.Scalar:
			return float64(v.Value), nil
		case model.Vector:
			if len(v) == 0 {
				// No series: nothing is above the threshold any more.
				return 0, nil
			}
			if len(v) > 1 {
				return 0, fmt.Errorf("query %q returned %d series, want one", q, len(v))
			}
			return float64(v[0].Value), nil
		default:
			return 0, fmt.Errorf("query %q returned a %s, want a scalar or vector", q, v.Type())
		}
	}
}
