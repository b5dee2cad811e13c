"""Training operators: PyTorchJob, TFJob, XGBoostJob, JAXJob, MPIJob and Trainer v2 TrainJob."""
