"""What the tuning tests share: a small Katib NAS search space (3 layers, convolution and reduction)."""

NAS = {"graphConfig": {"numLayers": 3, "inputSizes": [8, 8, 1], "outputSizes": [10]},
       "operations": [
           {"operationType": "convolution", "parameters": [
               {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "5"]}},
               {"name": "num_filter", "parameterType": "categorical", "feasibleSpace": {"list": ["8", "16"]}}]},
           {"operationType": "reduction", "parameters": [
               {"name": "reduction_type", "parameterType": "categorical", "feasibleSpace": {"list": ["max_pooling", "avg_pooling"]}},
               {"name": "pool_size", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "3", "step": "1"}}]}]}
