package xds

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// FuzzDecodeAndTranslate: any bytes as any of the four resource types,
// next to a valid view, must decode and translate to a valid config or an
// error, never a panic.
func FuzzDecodeAndTranslate(f *testing.F) {
	valid := func(t testing.TB) *Resources {
		res := NewResources()
		res.Clusters[clusterA] = edsCluster(clusterA)
		res.Endpoints[clusterA] = assignment(clusterA, "10.1.0.7:8080", "[fd00::7]:8080")
		res.Listeners["l"] = httpListener(t, vip, 80, routeName, clusterA)
		res.Routes[routeName] = routeTo(routeName, clusterA)
		return res
	}
	seed := valid(f)
	for i, msgs := range [][]proto.Message{values(seed.Clusters), values(seed.Endpoints), values(seed.Listeners), values(seed.Routes)} {
		for _, m := range msgs {
			b, err := proto.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), b)
		}
	}
	base := testBase(f)
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		typeURL := subscriptionOrder[int(kind)%len(subscriptionOrder)]
		msg, name, err := Decode(typeURL, &anypb.Any{TypeUrl: typeURL, Value: data})
		if err != nil {
			return
		}
		res := valid(t)
		put, _, err := res.mutators(typeURL)
		if err != nil {
			t.Fatal(err)
		}
		put(name, msg)
		b, err := Translate(base, res)
		if err != nil {
			return
		}
		if verr := b.Validate(); verr != nil {
			t.Fatalf("Translate returned a config that does not validate: %v", verr)
		}
	})
}
